"""The Kafka phases (Kafka 阶段): the raw transport ceiling, the faust worker pipeline at full
speed and paced at half its rate, and the 10x load burst.

The worker is a real `hotline worker` subprocess on its own topic prefix and its own PostgreSQL
schema. An order is done when its row has left 收集 (dispatched or sent to the manual queue);
latency is from our send to the record timestamp of its `workorders.dispatched` message, which
the worker sends after the dispatch is committed to the database.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from hotline.settings import Settings
from ops.bench.services import ROOT
from ops.bench.stats import (
    children_cpu_seconds,
    cpu_seconds,
    machine_busy_seconds,
    percentile,
    rss_mb,
    tree_pss_mb,
)
from streams.app import RECEIVED
from streams.handlers import DISPATCHED
from streams.lag import LAG_INTERVAL_S
from streams.partitioning import intake_partition

PARTITIONS = 4
RECEIVED_STATE = "收集"


def _producer(bootstrap: str) -> KafkaProducer:
    """The same producer settings as the intake gateway (`streams.kafka_io.producer`)."""
    return KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, retries=10
    )


def _encode(message: dict[str, Any]) -> tuple[bytes, bytes]:
    return str(message["order_id"]).encode(), json.dumps(message, ensure_ascii=False).encode()


def _partitions(messages: Sequence[dict[str, Any]]) -> list[int | None]:
    """Each message's partition, as `hotline ingest` picks it: its enterprise's home partition
    (`streams.partitioning`). Worked out before the clock starts, like a channel gateway that
    validates an order before sending it."""
    limit = Settings().max_text_chars
    return [intake_partition(m, PARTITIONS, max_text_chars=limit) for m in messages]


# ---- the raw ceiling ------------------------------------------------------------------------
def raw_rate(bootstrap: str, messages: Sequence[dict[str, Any]], prefix: str) -> float:
    """kafka-python producing and consuming the same messages through the same broker:
    orders per second from the first send to the last message consumed."""
    topic = f"{prefix}raw"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hotline-bench")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=60_000)
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.poll(timeout_ms=500)
    finished: list[float] = []

    def consume() -> None:
        for n, _ in enumerate(consumer, start=1):
            if n >= len(messages):
                finished.append(time.perf_counter())
                return

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    prod = _producer(bootstrap)
    encoded = [_encode(m) for m in messages]
    partitions = _partitions(messages)
    started = time.perf_counter()
    for (key, value), partition in zip(encoded, partitions, strict=True):
        prod.send(topic, key=key, value=value, partition=partition)
    prod.flush()
    reader.join(timeout=120)
    prod.close()
    consumer.close()
    if not finished:
        raise RuntimeError("Kafka 原始吞吐测试超时：消费者未收齐消息")
    return len(messages) / (finished[0] - started)


# ---- the worker -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    port: int
    prefix: str
    db_url: str
    log_path: Path
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.db_url)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def done_count(self, run: str) -> int:
        """Orders of ``run`` that have left 收集 (dispatched or in the manual queue)."""
        sql = text("SELECT count(*) FROM work_order WHERE id LIKE :run AND state <> :received")
        with self.engine.connect() as conn:
            return int(conn.execute(sql, {"run": f"{run}-%", "received": RECEIVED_STATE}).scalar_one())

    def stored_count(self, run: str) -> int:
        with self.engine.connect() as conn:
            sql = text("SELECT count(*) FROM work_order WHERE id LIKE :run")
            return int(conn.execute(sql, {"run": f"{run}-%"}).scalar_one())

    def dead_letters(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM dead_letter")).scalar_one())

    def holds(self, topic: str) -> bool:
        """Whether the worker's /health lists a partition of ``topic`` as assigned to it."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                health = json.loads(r.read())
        except (OSError, ValueError):
            return False
        return any(tp.startswith(f"{self.prefix}{topic}:")
                   for tp in health.get("assigned_partitions", []))

    def lag(self) -> int | None:
        """Total of the worker's `hotline_consumer_lag` gauge over its input topics."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return None
        total, seen = 0.0, False
        for line in body.splitlines():
            mine = line.startswith("hotline_consumer_lag{") and self.prefix in line
            if mine and (RECEIVED in line or "by-enterprise" in line):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        return int(total) if seen else None


@dataclass(frozen=True)
class CpuSnapshot:
    workers: float
    helpers: float
    machine: float
    at: float

    def per_order(self, later: CpuSnapshot, orders: int) -> dict[str, float]:
        """CPU milliseconds per order between this reading and ``later``: in the workers'
        processes, in their classifier processes and everywhere else on the machine (the
        broker, PostgreSQL, the bench's producer, other tenants of a shared host), and the
        cores the machine kept busy on average meanwhile."""
        workers = later.workers - self.workers
        helpers = later.helpers - self.helpers
        machine = later.machine - self.machine
        return {
            "kafka_cpu_worker_ms": workers * 1000 / orders,
            "kafka_cpu_helper_ms": helpers * 1000 / orders,
            "kafka_cpu_other_ms": max(machine - workers - helpers, 0.0) * 1000 / orders,
            "kafka_busy_cores": machine / max(later.at - self.at, 1e-9),
        }


class Workers:
    """The bench's worker group (one consumer group sharing the partitions), seen as one: the
    database counts are the group's, the lag is summed over the workers' gauges (each reports
    the partitions it holds), the resident memory is the largest worker's."""

    def __init__(self, members: Sequence[Worker]) -> None:
        if not members:
            raise ValueError("至少需要一个 worker")
        self.members = list(members)
        self.first = self.members[0]

    def done_count(self, run: str) -> int:
        return self.first.done_count(run)

    def stored_count(self, run: str) -> int:
        return self.first.stored_count(run)

    def dead_letters(self) -> int:
        return self.first.dead_letters()

    def lag(self) -> int | None:
        lags = [lag for lag in (w.lag() for w in self.members) if lag is not None]
        return sum(lags) if lags else None

    def rss_mb(self) -> float:
        return max(rss_mb(w.pid) for w in self.members)

    def tree_pss_mb(self) -> float:
        """The largest worker with its classifier process (proportional set size)."""
        return max(tree_pss_mb(w.pid) for w in self.members)

    def cpu(self) -> CpuSnapshot:
        """CPU seconds used so far: by the workers' own processes, by their children (the
        classifier processes), by the whole machine; and the time of reading."""
        return CpuSnapshot(
            workers=sum(cpu_seconds(w.pid) for w in self.members),
            helpers=sum(children_cpu_seconds(w.pid) for w in self.members),
            machine=machine_busy_seconds(),
            at=time.perf_counter(),
        )

    def check_running(self) -> None:
        for w in self.members:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker 已退出（返回码 {w.proc.returncode}），日志：{w.log_path}")

    def wait_sharing(self, timeout: float = 180) -> None:
        """With several workers, wait until each holds some of the intake partitions, so that
        the group does not rebalance in the middle of a measurement."""
        if len(self.members) == 1:
            return
        deadline = time.perf_counter() + timeout
        while not all(w.holds(RECEIVED) for w in self.members):
            self.check_running()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"worker 组未在 {timeout:.0f} 秒内分配好分区，日志：{self.log_paths}")
            time.sleep(0.5)

    @property
    def log_paths(self) -> str:
        return "、".join(str(w.log_path) for w in self.members)


def worker_layout(cores: int, workers: int | None = None,
                  classify_process: bool | None = None) -> tuple[int, bool]:
    """(workers, whether each classifies in a helper process) for the Kafka phases on
    ``cores`` usable cores, where not given. One worker per core, up to the intake
    partitions, each classifying in its own process; a helper process only where every worker
    has a second core for it. On this 2-core machine (interleaved runs of the Kafka phases,
    40,000 orders, 2026-12-05): two workers classifying in-process routed 2,928-3,124 orders/s
    (half-rate p99 163-292 ms), one worker with its helper 2,574-2,702/s (p99 95-101 ms), two
    workers with helpers 2,729/s, three workers in-process 2,437/s (p99 721 ms)."""
    n = workers or max(1, min(cores, PARTITIONS))
    return n, (2 * n <= cores) if classify_process is None else classify_process


@contextmanager
def workers(
    bootstrap: str, db_url: str, prefix: str, log_dir: Path, n: int, *,
    classify_process: bool = True,
) -> Iterator[Workers]:
    """`n` `hotline worker` subprocesses in one group on the bench's topics, each with its
    classifier process or classifying in-process (`HOTLINE_CLASSIFY_PROCESS`)."""
    with ExitStack() as stack:
        yield Workers([
            stack.enter_context(worker(bootstrap, db_url, prefix, log_dir, name=f"{i + 1}",
                                       classify_process=classify_process))
            for i in range(n)
        ])


@contextmanager
def worker(
    bootstrap: str, db_url: str, prefix: str, log_dir: Path, *, name: str = "",
    classify_process: bool = True,
) -> Iterator[Worker]:
    """A `hotline worker` subprocess on its own topics; stopped (SIGTERM) at the end."""
    port = _free_port()
    worker_id = f"bench-{prefix.strip('.')}" + (f"-{name}" if name else "")
    env = {
        **os.environ,
        "HOTLINE_KAFKA_BOOTSTRAP": bootstrap,
        "HOTLINE_TOPIC_PREFIX": prefix,
        "HOTLINE_DATABASE_URL": db_url,
        "HOTLINE_PARTITIONS": str(PARTITIONS),
        "HOTLINE_WORKER_ID": worker_id,
        "HOTLINE_CLASSIFY_PROCESS": "1" if classify_process else "0",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"worker-{worker_id.removeprefix('bench-')}.log"
    cmd = [sys.executable, "-m", "hotline.cli", "worker", "--web-port", str(port),
           "--loglevel", "warning"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    w = Worker(proc=proc, port=port, prefix=prefix, db_url=db_url, log_path=log_path)
    try:
        yield w
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        w.engine.dispose()


def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hotline-bench")
    try:
        mine = [t for t in admin.list_topics() if t.startswith(prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


# ---- sending and waiting --------------------------------------------------------------------
class DispatchWatcher:
    """Reads `workorders.dispatched` in the background, from its end as of construction:
    order id -> record timestamp (ms). Built only for the phases that read it (latency and
    burst), so it does not decode the full-speed phase's dispatches on the cores the pipeline
    is measured on (it consumed them as they came before)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        topic = f"{prefix}{DISPATCHED}"
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       group_id=None)
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            self._consumer.close()
            raise RuntimeError(f"主题 {topic} 不存在或没有分区")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before the phase sends anything
            self._consumer.position(tp)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    self.seen.setdefault(r.key.decode(), r.timestamp)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def send_paced(
    prod: KafkaProducer, topic: str, messages: Sequence[dict[str, Any]], rate: float | None
) -> dict[str, int]:
    """Send (at ``rate`` per second, or as fast as possible); order id -> send time (ms)."""
    sent: dict[str, int] = {}
    partitions = _partitions(messages)
    started = time.perf_counter()
    wall0 = time.time()
    for i, (m, partition) in enumerate(zip(messages, partitions, strict=True)):
        if rate:
            due = started + i / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
        key, value = _encode(m)
        sent[str(m["order_id"])] = int((wall0 + time.perf_counter() - started) * 1000)
        prod.send(topic, key=key, value=value, partition=partition)
    prod.flush()
    return sent


#: `wait_done` counts done orders at least this often near the end (the precision of a
#: phase's end time) and at most this seldom far from it: each count reads every done order's
#: row, up to a million in the burst, on the machine the pipeline is measured on
COUNT_EVERY_MIN_S = 0.25
COUNT_EVERY_MAX_S = 5.0


def next_count_in(done: int, n: int, elapsed: float) -> float:
    """Seconds until `wait_done` counts again: half the time the rest should take at the rate
    so far, within [COUNT_EVERY_MIN_S, COUNT_EVERY_MAX_S]."""
    if done <= 0 or elapsed <= 0:
        return COUNT_EVERY_MIN_S
    half_rest = 0.5 * (n - done) / (done / elapsed)
    return min(max(half_rest, COUNT_EVERY_MIN_S), COUNT_EVERY_MAX_S)


def wait_done(w: Workers, run: str, n: int, timeout: float, on_tick: Any = None) -> float | None:
    """Wait until ``n`` orders of ``run`` are done; the perf_counter time when they were
    (within COUNT_EVERY_MIN_S). ``on_tick`` is called every 0.25 s."""
    started = time.perf_counter()
    deadline = started + timeout
    count_at = started
    while time.perf_counter() < deadline:
        if on_tick is not None:
            on_tick()
        now = time.perf_counter()
        if now >= count_at:
            done = w.done_count(run)
            if done >= n:
                return time.perf_counter()
            count_at = now + next_count_in(done, n, now - started)
        w.check_running()
        time.sleep(max(min(0.25, count_at - time.perf_counter()), 0.0))
    return None


def settled_lag(w: Workers, timeout: float = 2 * LAG_INTERVAL_S + 5) -> int | None:
    """The workers' lag once every order is done: offsets are committed about every second,
    but the gauge is refreshed only every LAG_INTERVAL_S, so a read right after the last order
    shows the lag of up to that long ago. Polls until it reads 0 or ``timeout`` passes; the
    last reading (not 0: committed offsets stuck behind the handled messages)."""
    deadline = time.perf_counter() + timeout
    lag = w.lag()
    while lag != 0 and time.perf_counter() < deadline:
        time.sleep(1.0)
        lag = w.lag()
    return lag


def latencies(sent: dict[str, int], seen: dict[str, int]) -> list[float]:
    return [float(seen[k] - t) for k, t in sent.items() if k in seen]


# ---- the phases -----------------------------------------------------------------------------
def warm_up(w: Workers, prod: KafkaProducer, topic: str, messages: Sequence[dict[str, Any]],
            run: str, timeout: float = 180, *, rate: float | None = None) -> None:
    """Send orders (at ``rate`` per second, or as fast as possible) that are not measured,
    and wait until the workers have processed them (assignment done, load settled)."""
    send_paced(prod, topic, messages, rate)
    if wait_done(w, run, len(messages), timeout) is None:
        raise RuntimeError(f"worker 预热超时（{timeout:.0f} 秒），日志：{w.log_paths}")


def pipeline_rate(w: Workers, prod: KafkaProducer, topic: str,
                  messages: Sequence[dict[str, Any]], run: str) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    sent = send_paced(prod, topic, messages, None)
    done = wait_done(w, run, len(messages), timeout=max(120.0, len(messages) / 5))
    if done is None:
        raise RuntimeError(f"Kafka 流水线测试超时：{w.done_count(run)}/{len(messages)} 条完成")
    return len(messages) / (done - started), sent


@dataclass
class BurstResult:
    rate: float
    seconds: float
    orders: int
    achieved_rate: float
    peak_lag: int | None
    catch_up_s: float | None
    rss_before_mb: float
    rss_peak_mb: float
    rss_after_mb: float
    lost: int
    lag_after: int | None
    p99_ms: float


def burst(w: Workers, prod: KafkaProducer, topic: str, watcher: DispatchWatcher,
          messages: Sequence[dict[str, Any]], run: str, rate: float, seconds: float,
          catch_up_timeout: float) -> BurstResult:
    """Send ``rate`` orders/s for ``seconds``; sample lag and RSS until the worker catches up."""
    samples: dict[str, list[float]] = {"lag": [], "rss": []}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            lag = w.lag()
            if lag is not None:
                samples["lag"].append(lag)
            samples["rss"].append(w.rss_mb())
            stop.wait(1.0)

    rss_before = w.rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    sent = send_paced(prod, topic, messages, rate)
    sent_end = time.perf_counter()
    done = wait_done(w, run, len(messages), catch_up_timeout)
    lag_after = settled_lag(w) if done is not None else w.lag()
    stop.set()
    sampler.join(timeout=10)
    stored = w.stored_count(run)
    return BurstResult(
        rate=rate,
        seconds=seconds,
        orders=len(messages),
        achieved_rate=len(messages) / (sent_end - started),
        peak_lag=int(max(samples["lag"])) if samples["lag"] else None,
        catch_up_s=(done - sent_end) if done is not None else None,
        rss_before_mb=rss_before,
        rss_peak_mb=max((r for r in samples["rss"] if not math.isnan(r)), default=rss_before),
        rss_after_mb=w.rss_mb(),
        lost=len(messages) - stored,
        lag_after=lag_after,
        p99_ms=percentile(latencies(sent, watcher.seen), 99),
    )
