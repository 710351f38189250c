"""Helpers for the Kafka pipeline tests: worker subprocesses, databases, topic readers, waits.

Every wait has a deadline; every process started here is killed by its fixture's finalizer.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # type: ignore[import-untyped]
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from hotline.settings import Settings
from models.lifecycle import LifecycleEvent
from streams.kafka_io import ingest
from streams.sample_day import corpus_records

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOTLINE = str(PROJECT_ROOT / ".venv" / "bin" / "hotline")
PARTITIONS = 4
START_DAY = datetime(2026, 11, 24, 8, 0, 0)


# ---- waiting -----------------------------------------------------------------------------------
def wait_until(
    check: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Poll `check` until it returns a truthy value; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- orders and events -------------------------------------------------------------------------
def make_orders(n: int, *, prefix: str, start: datetime = START_DAY) -> list[dict[str, Any]]:
    """`n` valid intake messages from the project's own corpus, ids `<prefix><serial>`,
    one a minute; the corpus is cycled, so one enterprise repeats across the batch."""
    records = corpus_records()
    out: list[dict[str, Any]] = []
    for i in range(n):
        r = records[(i * 7) % len(records)]
        msg = {
            "order_id": f"{prefix}{i:05d}",
            "channel": r.get("channel") or "12345热线",
            "received_at": (start + timedelta(minutes=i)).isoformat(timespec="seconds"),
            "title": r.get("title") or "",
            "text": r["text"],
            "enterprise_name": r.get("enterprise_name"),
            "credit_code": r.get("credit_code"),
            "address": r.get("address"),
            "appeal_type": r.get("appeal_type"),
        }
        out.append({k: v for k, v in msg.items() if v is not None})
    return out


def write_jsonl(path: Path, messages: Iterable[Any]) -> Path:
    lines = []
    for m in messages:
        if isinstance(m, bytes):
            lines.append(m)
        elif isinstance(m, str):
            lines.append(m.encode())
        else:
            lines.append(json.dumps(m, ensure_ascii=False).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def event(order_id: str, kind: str, at: datetime, actor: str, **data: Any) -> LifecycleEvent:
    return LifecycleEvent(
        event_id=f"{order_id}:{kind}:{uuid.uuid4().hex[:8]}", order_id=order_id, kind=kind,
        at=at, actor=actor, data=data,
    )


def send_raw(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Put raw (key, value) messages on a topic, acknowledged by the broker."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in messages]
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(timeout=10)


class PacedIngest:
    """Orders onto `workorders.received` through the product's own `ingest`, at most `rate` a
    second from a background thread, so that a worker stopped during the stream is stopped with
    orders still arriving, whatever its speed. After `hold_after` orders the thread waits for
    `release()` (the test's fault is in place) before sending the rest at the same pace, so the
    stream cannot end before the fault, however fast the worker."""

    def __init__(self, p: Pipeline, orders: Sequence[dict[str, Any]], *, rate: float,
                 hold_after: int) -> None:
        self.settings = Settings(kafka_bootstrap=p.bootstrap, database_url=p.database_url,
                                 topic_prefix=p.prefix, partitions=PARTITIONS)
        self.orders, self.rate, self.hold_after = list(orders), rate, hold_after
        self.produced = 0  # handed to the producer so far
        self.sent: int | None = None  # acknowledged by the broker, once done
        self.error: BaseException | None = None
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-ingest", daemon=True)

    def start(self) -> PacedIngest:
        self._thread.start()
        return self

    def release(self) -> None:
        self._released.set()

    def _paced(self) -> Iterator[dict[str, Any]]:
        began = time.monotonic()
        for i, order in enumerate(self.orders):
            if i == self.hold_after:
                self._released.wait(timeout=120)
                began = time.monotonic() - i / self.rate
            delay = began + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.produced = i + 1
            yield order

    def _run(self) -> None:
        try:
            self.sent = ingest(self.settings, self._paced())
        except BaseException as e:  # noqa: BLE001 (reported by wait())
            self.error = e

    def wait(self, timeout: float = 120) -> int:
        """Release the rest if still held; return how many the broker acknowledged."""
        self.release()
        self._thread.join(timeout)
        if self.error is not None:
            raise AssertionError(f"paced ingest failed: {self.error!r}") from self.error
        assert self.sent is not None, f"paced ingest still running after {timeout:.0f} s"
        return self.sent


# ---- processes ---------------------------------------------------------------------------------
@dataclass
class Pipeline:
    """One deployment under test: a broker, a database, a topic prefix, its workers."""

    bootstrap: str
    database_url: str
    prefix: str
    logs: Path
    workers: list[Worker] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        env.update(
            HOTLINE_KAFKA_BOOTSTRAP=self.bootstrap,
            HOTLINE_DATABASE_URL=self.database_url,
            HOTLINE_TOPIC_PREFIX=self.prefix,
            HOTLINE_PARTITIONS=str(PARTITIONS),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def start_worker(
        self, worker_id: str, *, loglevel: str | None = None, program: Sequence[str] = (HOTLINE,)
    ) -> Worker:
        """Start `hotline worker`; its log level is `loglevel`, else $HOTLINE_TEST_WORKER_LOGLEVEL
        (set it to `info` or `debug` when a test needs the workers' story), else warning.
        `program` runs in place of `hotline` (a worker with an injected fault)."""
        loglevel = loglevel or os.environ.get("HOTLINE_TEST_WORKER_LOGLEVEL", "warning")
        port = free_port()
        log = self.logs / f"{worker_id}.log"
        fh = log.open("ab")
        proc = subprocess.Popen(
            [*program, "worker", "--loglevel", loglevel],
            env=self.env(HOTLINE_WORKER_ID=worker_id, HOTLINE_METRICS_PORT=str(port)),
            stdout=fh, stderr=subprocess.STDOUT, cwd=self.logs, start_new_session=True,
        )
        fh.close()
        w = Worker(worker_id, proc, port, log)
        self.workers.append(w)
        return w

    def cli(self, *args: str, stdin: bytes | None = None, timeout: float = 60) -> str:
        done = subprocess.run(
            [HOTLINE, *args], check=False, env=self.env(), input=stdin, capture_output=True,
            timeout=timeout, cwd=self.logs,
        )
        out = done.stdout.decode() + done.stderr.decode()
        assert done.returncode == 0, f"hotline {' '.join(args)} failed: {out[-2000:]}"
        return out

    def cli_in_background(self, *args: str) -> subprocess.Popen[bytes]:
        """Start `hotline <args>` and return at once (its output goes to the test's logs)."""
        with (self.logs / "cli.log").open("ab") as fh:
            return subprocess.Popen([HOTLINE, *args], env=self.env(), stdout=fh,
                                    stderr=subprocess.STDOUT, cwd=self.logs)

    def stop_all(self) -> None:
        for w in self.workers:
            w.kill()


@dataclass
class Worker:
    worker_id: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def assigned(self, topic: str) -> set[int]:
        h = self.health() or {}
        return {
            int(tp.rsplit(":", 1)[1]) for tp in h.get("assigned_partitions", [])
            if tp.rsplit(":", 1)[0] == topic
        }

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: the worker leaves the group cleanly, committing what it acknowledged."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.worker_id} did not stop within {timeout} s") from None

    def dump_stacks(self) -> None:
        """Ask a live worker for its task and thread stacks and consumer state (kill -USR1),
        written to its log: kept with the test's logs when a test fails."""
        if self.alive():
            self.proc.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (kill -9)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# ---- databases ---------------------------------------------------------------------------------
def with_search_path(url: str, schema: str) -> str:
    parsed = make_url(url)
    query = dict(parsed.query)
    query["options"] = f"-csearch_path={schema}"
    return parsed.set(query=query).render_as_string(hide_password=False)


@dataclass
class PgSchema:
    admin_url: str
    schema: str

    @property
    def url(self) -> str:
        return with_search_path(self.admin_url, self.schema)


def create_schema(admin_url: str, label: str) -> PgSchema:
    schema = f"it_{label}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        engine.dispose()
    return PgSchema(admin_url, schema)


def drop_schema(pg: PgSchema) -> None:
    engine = create_engine(pg.admin_url, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{pg.schema}" CASCADE'))
    finally:
        engine.dispose()


class Db:
    """Read-only questions the tests ask of the pipeline's database."""

    def __init__(self, url: str) -> None:
        args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
        self.engine: Engine = create_engine(url, connect_args=args, pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(text(sql), params).all())
        except Exception as exc:  # tables not created yet by the worker
            if "work_order" in str(exc) or "event_log" in str(exc) or "dead_letter" in str(exc):
                return []
            raise

    def orders(self, prefix: str) -> dict[str, Any]:
        rows = self.rows(
            "SELECT id, state, lead_unit, co_units, return_count, reopen_count FROM work_order "
            "WHERE id LIKE :p", p=prefix + "%",
        )
        return {r[0]: r for r in rows}

    def routed(self, prefix: str) -> int:
        """Orders past 收集: dispatched or in the manual queue."""
        return int(self.rows(
            "SELECT count(*) FROM work_order WHERE id LIKE :p AND state <> '收集'",
            p=prefix + "%",
        )[0][0]) if self.orders_exist() else 0

    def orders_exist(self) -> bool:
        return bool(self.rows("SELECT 1 FROM work_order LIMIT 1"))

    def accepted_events(self, prefix: str) -> Counter[tuple[str, str]]:
        """(order id, kind) → how many accepted events of that kind the order has."""
        rows = self.rows(
            "SELECT order_id, kind, count(*) FROM event_log WHERE accepted AND order_id LIKE :p "
            "GROUP BY order_id, kind", p=prefix + "%",
        )
        return Counter({(r[0], r[1]): int(r[2]) for r in rows})

    def event_ids_unique(self, prefix: str) -> bool:
        rows = self.rows(
            "SELECT event_id FROM event_log WHERE order_id LIKE :p GROUP BY event_id "
            "HAVING count(*) > 1", p=prefix + "%",
        )
        return not rows

    def dead_letters(self) -> list[Any]:
        return self.rows("SELECT source, reason, payload, order_id FROM dead_letter")


# ---- reading topics ----------------------------------------------------------------------------
def read_topic(bootstrap: str, topic: str, *, timeout: float = 20) -> list[tuple[str | None, Any]]:
    """Every message on `topic` from the beginning to the current end: (key, JSON value)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        consumer_timeout_ms=1000,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[tuple[str | None, Any]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}")
            for batch in consumer.poll(timeout_ms=500).values():
                for r in batch:
                    key = r.key.decode() if r.key is not None else None
                    out.append((key, json.loads(r.value)))
        return out
    finally:
        consumer.close()


def list_topics(bootstrap: str, prefix: str) -> list[str]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return sorted(t for t in consumer.topics() if t.startswith(prefix))
    finally:
        consumer.close()


def feeds_by_order(bootstrap: str, prefix: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """order id → [(feed topic without prefix, message)] over every `dispatch.*` feed."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for topic in list_topics(bootstrap, prefix + "dispatch."):
        for key, value in read_topic(bootstrap, topic):
            out[str(key)].append((topic[len(prefix):], value))
    return out


def delete_topics(bootstrap: str, prefix: str) -> None:
    from kafka import KafkaAdminClient  # type: ignore[import-untyped]

    try:
        names = list_topics(bootstrap, prefix)
    except Exception as exc:  # noqa: BLE001 - e.g. a test that failed with its broker down
        logging.getLogger(__name__).warning("listing test topics failed: %s", exc)
        return
    if not names:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="hotline-it-cleanup")
    try:
        admin.delete_topics(names, timeout_ms=30_000)
    except Exception as exc:  # noqa: BLE001 - cleanup is best effort; the prefix is unique
        logging.getLogger(__name__).warning("deleting test topics failed: %s", exc)
    finally:
        admin.close()


@contextmanager
def running_pipeline(
    bootstrap: str, database_url: str, prefix: str, logs: Path
) -> Iterator[Pipeline]:
    """A pipeline whose workers are all killed and whose topics are deleted afterwards."""
    logs.mkdir(parents=True, exist_ok=True)
    p = Pipeline(bootstrap, database_url, prefix, logs)
    try:
        yield p
    finally:
        p.stop_all()
        delete_topics(bootstrap, prefix)
