"""`python -m ops.bench` smoke test: the in-process phases (model, jieba, classifier, embedded
pipeline) on a tiny input print a Chinese report and a JSON last line with every key. No timing
assertions: the figures depend on the machine."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from ops.bench import kafka_bench as kb
from ops.bench.__main__ import main
from ops.bench.kafka_bench import CpuSnapshot
from ops.bench.report import KEYS, jsonable, ratios
from ops.bench.stats import cpu_seconds, machine_busy_seconds

LOCAL_KEYS = ("embedded_pipeline_rate", "classifier_rate", "embedded_p99_ms", "jieba_rate",
              "model_load_s")


def test_quick_local_bench_prints_the_json_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--quick", "--no-kafka", "--orders", "24", "--work-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(KEYS) <= set(result)
    for key in LOCAL_KEYS:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["kafka_pipeline_rate"] is None  # phase skipped, key still present
    assert result["embedded_paced_orders"] == 20
    assert "内嵌流水线" in "\n".join(lines[:-1])
    assert isinstance(result["embedded_goal_met"], bool)
    # the headline embedded figure is `hotline run` as it runs by default, the other beside it
    assert result["embedded_inline_rate"] > 0
    default = "embedded_ahead_rate" if result["embedded_classify_process"] else (
        "embedded_inline_rate")
    assert result["embedded_pipeline_rate"] == result[default]


def test_ratios_use_the_lower_ceiling() -> None:
    r = ratios({"classifier_rate": 400.0, "kafka_raw_rate": 1000.0, "kafka_pipeline_rate": 220.0,
                "embedded_pipeline_rate": 200.0, "kafka_p99_ms": 120.0})
    assert r["kafka_ceiling_rate"] == 400.0
    assert r["kafka_goal_met"] is True  # 55% of the classifier, the lower ceiling
    assert r["embedded_goal_met"] is False  # 50% < 60%
    assert r["kafka_p99_goal_met"] is True


def test_json_line_has_every_key_and_no_nan() -> None:
    out = jsonable({"kafka_p99_ms": float("nan"), "burst_lost": 0})
    assert set(KEYS) <= set(out)
    assert out["kafka_p99_ms"] is None and out["burst_lost"] == 0
    json.dumps(out, allow_nan=False)


def test_cpu_per_order_splits_the_machine_and_bounds_the_rate() -> None:
    before = CpuSnapshot(workers=10.0, helpers=2.0, machine=100.0, at=50.0)
    after = CpuSnapshot(workers=15.0, helpers=4.5, machine=110.0, at=57.5)
    split = before.per_order(after, 10_000)
    assert split == {
        "kafka_cpu_worker_ms": 0.5,
        "kafka_cpu_helper_ms": 0.25,
        "kafka_cpu_other_ms": 0.25,  # 10 s busy in all, 7.5 s of it the worker's and helper's
        "kafka_busy_cores": 10.0 / 7.5,
    }
    r = ratios({"classifier_rate": 4000.0, "kafka_raw_rate": 20000.0,
                "kafka_pipeline_rate": 1500.0, "kafka_cores": 2, **split})
    assert r["kafka_cpu_bound_rate"] == 2000.0  # 2 cores / 1 ms per order
    assert r["kafka_cpu_bound_vs_ceiling"] == 0.5


def test_cpu_readings_of_this_process_and_the_machine_advance() -> None:
    mine, machine = cpu_seconds(os.getpid()), machine_busy_seconds()
    spin_until = time.process_time() + 0.3
    while time.process_time() < spin_until:
        pass
    assert cpu_seconds(os.getpid()) - mine >= 0.2
    assert machine_busy_seconds() - machine >= 0.2
    assert math.isnan(cpu_seconds(2**22 + 12345))  # above Linux's largest pid: no such process


class _Clock:
    """`time` for `kafka_bench.wait_done`: sleeping moves the clock on."""

    def __init__(self) -> None:
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_wait_done_counts_seldom_far_from_the_end_and_often_near_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(kb, "time", clock)
    counted: list[float] = []
    ticks: list[float] = []

    class Workers:  # 100 orders done per second, 1,000 in all
        def done_count(self, run: str) -> int:
            counted.append(clock.t)
            return min(int(clock.t * 100), 1000)

        def check_running(self) -> None:
            pass

    done = kb.wait_done(Workers(), "R", 1000, timeout=60,  # type: ignore[arg-type]
                        on_tick=lambda: ticks.append(clock.t))
    assert done is not None and 10.0 <= done <= 10.0 + kb.COUNT_EVERY_MIN_S
    assert len(counted) <= 15  # a count every 0.25 s would be 41
    assert max(b - a for a, b in zip(ticks, ticks[1:])) <= 0.25 + 1e-9  # ticks stay regular
    assert kb.wait_done(Workers(), "R", 10**6, timeout=30) is None  # never done: times out


def test_the_kafka_phases_run_a_worker_per_core_and_a_helper_only_with_a_spare_core() -> None:
    assert kb.worker_layout(1) == (1, False)
    assert kb.worker_layout(2) == (2, False)  # this machine: two workers, in-process
    assert kb.worker_layout(4) == (4, False)
    assert kb.worker_layout(16) == (kb.PARTITIONS, True)  # no more workers than partitions
    assert kb.worker_layout(2, workers=1) == (1, True)  # one worker: its helper on core two
    assert kb.worker_layout(2, workers=1, classify_process=False) == (1, False)
    assert kb.worker_layout(2, classify_process=True) == (2, True)
