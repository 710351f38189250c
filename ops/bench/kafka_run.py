"""The Kafka side of `make bench`: services, the raw ceiling, the worker pipeline and the burst."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from models.migrate import migrate
from ops.bench import kafka_bench as kb
from ops.bench.services import services
from ops.bench.stats import latency_windows, percentile
from ops.bench.workload import messages
from ops.pg_schema import scratch_schema
from streams.app import RECEIVED

WARM_UP_ORDERS = 40
#: full-speed load through the pipeline before anything is measured. A broker just started
#: (as `make bench` starts one on a fresh machine) is slow at first, presumably until its
#: JVM has compiled the hot paths: with only the raw phase and 40 orders before, a fresh
#: broker gave 2,698 orders/s and a half-rate p99 of 803 ms, falling from 930 to 173 ms over
#: the 20 s of the latency phase, where a broker up for hours gave 3,160/s and 323 ms
#: (2026-12-05, two workers in-process). The JVM cause was not shown: later (stop 26) the
#: half-rate p99 misses that remained came from the workers' CPU per order, not the broker
#: (a fetched order was about 15 ms old; README, "Fetch gathering")
WARM_UP_SECONDS = 20.0
WARM_UP_ROUND = 5_000  # orders per round of the warm-up load
LATENCY_SECONDS = 20.0
#: half-rate load sent, and waited for, before the latency phase: the half-rate latency is
#: the steady one. Right after the full-speed phase, on a broker started minutes before, the
#: first seconds at half rate ran late (p50 up to 0.9 s, falling to about 0.1 s within 8-10 s,
#: with one worker or two; not seen on a broker up for hours)
LATENCY_LEAD_IN_SECONDS = 10.0


def run_kafka(
    templates: list[dict[str, Any]], n: int, run_id: str, log_dir: Path, *,
    burst: bool, burst_seconds: float, burst_factor: float, workers: int = 1,
    classify_process: bool = True, warm_up_s: float = WARM_UP_SECONDS,
) -> dict[str, Any]:
    out: dict[str, Any] = {"kafka_workers": workers, "kafka_classify_process": classify_process}
    prefix = f"bench-{run_id}."
    with services() as svc:
        out["services_started"] = list(svc.started)
        print(f"Kafka {svc.kafka_bootstrap}，PostgreSQL 就绪；主题前缀 {prefix}", flush=True)
        try:
            out["kafka_raw_rate"] = kb.raw_rate(
                svc.kafka_bootstrap, messages(templates, n, f"R{run_id}"), prefix
            )
            with scratch_schema(svc.pg_url, "bench") as db_url:
                migrate(db_url)  # the worker would do it too; the bench polls the tables first
                out.update(_pipeline(svc.kafka_bootstrap, db_url, prefix, templates, n, run_id,
                                     log_dir, burst, burst_seconds, burst_factor, workers,
                                     classify_process, warm_up_s))
        finally:
            kb.delete_topics(svc.kafka_bootstrap, prefix)
    return out


def _warm_up_load(
    w: kb.Workers, prod: Any, topic: str, templates: list[dict[str, Any]], run_id: str,
    seconds: float,
) -> dict[str, Any]:
    """Rounds of `WARM_UP_ROUND` orders at full speed, each waited for, until ``seconds``
    have passed (`WARM_UP_SECONDS`); nothing measured."""
    started, rounds = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        run = f"V{run_id}{rounds}"
        kb.warm_up(w, prod, topic, messages(templates, WARM_UP_ROUND, run), run)
        rounds += 1
    if rounds:
        print(f"预热：{rounds * WARM_UP_ROUND} 单全速送入，"
              f"{time.perf_counter() - started:.0f} 秒", flush=True)
    return {"kafka_warm_up_orders": rounds * WARM_UP_ROUND}


def _pipeline(
    bootstrap: str, db_url: str, prefix: str, templates: list[dict[str, Any]], n: int,
    run_id: str, log_dir: Path, burst: bool, burst_seconds: float, burst_factor: float,
    workers: int, classify_process: bool, warm_up_s: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    topic = f"{prefix}{RECEIVED}"
    with kb.workers(bootstrap, db_url, prefix, log_dir, workers,
                    classify_process=classify_process) as w:
        prod = kb._producer(bootstrap)
        watcher: kb.DispatchWatcher | None = None
        try:
            w.wait_sharing()
            kb.warm_up(w, prod, topic, messages(templates, WARM_UP_ORDERS, f"W{run_id}"),
                       f"W{run_id}")
            out.update(_warm_up_load(w, prod, topic, templates, run_id, warm_up_s))
            before = w.cpu()
            rate, _ = kb.pipeline_rate(w, prod, topic, messages(templates, n, f"K{run_id}"),
                                       f"K{run_id}")
            out.update(before.per_order(w.cpu(), n), kafka_cores=os.cpu_count() or 1)
            out["kafka_pipeline_rate"] = rate
            print(f"Kafka 流水线：{rate:.1f} 单/秒；测延迟（半速 {rate / 2:.1f} 单/秒）…", flush=True)
            lead_in = messages(templates, max(int(rate / 2 * LATENCY_LEAD_IN_SECONDS), 50),
                               f"M{run_id}")
            kb.warm_up(w, prod, topic, lead_in, f"M{run_id}", timeout=120, rate=rate / 2)
            watcher = kb.DispatchWatcher(bootstrap, prefix)
            paced = messages(templates, max(int(rate / 2 * LATENCY_SECONDS), 50), f"L{run_id}")
            sent = kb.send_paced(prod, topic, paced, rate / 2)
            kb.wait_done(w, f"L{run_id}", len(paced), timeout=120)
            seen = _settled(watcher, sent)
            lat = kb.latencies(sent, seen)
            print("半速延迟按发送时间（每 2 秒：起点 条数 p50/p99 毫秒）："
                  + "；".join(f"{s / 1000:.0f}s {n} {p50:.0f}/{p99:.0f}"
                             for s, n, p50, p99 in latency_windows(sent, seen)), flush=True)
            out.update(kafka_paced_rate=rate / 2, kafka_p50_ms=percentile(lat, 50),
                       kafka_p99_ms=percentile(lat, 99), kafka_latency_orders=len(lat),
                       worker_rss_mb=w.rss_mb(), worker_pss_mb=w.tree_pss_mb())
            if burst:
                out.update(_burst(w, prod, topic, watcher, templates, run_id, rate,
                                  burst_seconds, burst_factor))
            out["dead_letters"] = w.dead_letters()
        finally:
            if watcher is not None:
                watcher.close()
            prod.close()
    return out


def _settled(
    watcher: kb.DispatchWatcher, sent: dict[str, int], wait_s: float = 5.0
) -> dict[str, int]:
    """The watcher's view once the dispatched messages for ``sent`` have had time to arrive."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(k in watcher.seen for k in sent):
        time.sleep(0.2)
    return dict(watcher.seen)


def _burst(
    w: kb.Workers, prod: Any, topic: str, watcher: kb.DispatchWatcher,
    templates: list[dict[str, Any]], run_id: str, sustained: float, seconds: float,
    factor: float,
) -> dict[str, Any]:
    rate = sustained * factor
    total = max(int(rate * seconds), 1)
    print(f"突发负载：{factor:g} 倍持续速率（{rate:.0f} 单/秒）× {seconds:g} 秒 = {total} 单…",
          flush=True)
    timeout = max(180.0, total / max(sustained, 1.0) * 3)
    r = kb.burst(w, prod, topic, watcher, messages(templates, total, f"B{run_id}"),
                 f"B{run_id}", rate, seconds, timeout)
    return {
        "burst_rate": r.rate,
        "burst_achieved_rate": r.achieved_rate,
        "burst_seconds": r.seconds,
        "burst_orders": r.orders,
        "burst_peak_lag": r.peak_lag,
        "burst_catch_up_s": r.catch_up_s,
        "burst_lag_after": r.lag_after,
        "burst_rss_before_mb": r.rss_before_mb,
        "burst_rss_peak_mb": r.rss_peak_mb,
        "burst_rss_after_mb": r.rss_after_mb,
        "burst_lost": r.lost,
        "burst_p99_ms": r.p99_ms if not math.isnan(r.p99_ms) else None,
    }
