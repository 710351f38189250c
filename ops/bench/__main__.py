"""`make bench` = ``python -m ops.bench``: throughput, latency and a load burst, all in one run.

Prints a Chinese report and, as its last line, one JSON object (see `ops.bench.report.KEYS`).
Options: ``--quick`` (a smoke run: small counts, a 5-second burst), ``--no-kafka`` (in-process
phases only), ``--no-burst``, ``--orders N``, ``--burst-seconds S``, ``--burst-factor F``,
``--haikou`` (add the real Haikou texts, read in place from /work/shared/data), ``--workers N``
(the Kafka phases with N workers in one consumer group) and ``--classify-process on|off``
(each worker with its classifier process, or classifying in-process). By default one worker
per usable core, up to the intake partitions, each with a classifier process only where it
has a second core to itself (`ops.bench.kafka_bench.worker_layout`): on 2 cores, two workers
classifying in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hotline.settings import PROJECT_ROOT, Settings
from ops.bench import report
from ops.bench.local import run_local
from ops.bench.workload import corpus_templates, haikou_templates, messages


#: orders of the full-speed phases: at about 2,000 orders/s the Kafka phase lasts 10 s, long
#: enough for a steady rate (with 3,000, as before, it lasted under 2 s, of which the first and
#: the last routing batches were a large part)
DEFAULT_ORDERS = 20_000


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("worker 数至少为 1")
    return n


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ops.bench", description="派单流水线性能基准")
    p.add_argument("--quick", action="store_true", help="冒烟测试：小样本、5 秒突发")
    p.add_argument("--orders", type=int, help="吞吐测试的工单数（默认 20000，--quick 为 300）")
    p.add_argument("--no-kafka", action="store_true", help="只测本机阶段（模型、jieba、内嵌模式）")
    p.add_argument("--no-burst", dest="burst", action="store_false", help="不做突发负载测试")
    p.add_argument("--burst-seconds", type=float, help="突发持续秒数（默认 60，--quick 为 5）")
    p.add_argument("--burst-factor", type=float, default=10.0, help="突发速率为持续速率的倍数")
    p.add_argument("--workers", type=_positive,
                   help="Kafka 阶段同一消费组内的 worker 进程数（默认每个可用核一个，至多为分区数）")
    p.add_argument("--classify-process", choices=("on", "off"),
                   help="worker 是否另起分类子进程（默认仅当每个 worker 另有一核可用时）")
    p.add_argument("--haikou", action="store_true", help="加入海口 12345 真实诉求文本")
    p.add_argument("--work-dir", type=Path, help="内嵌模式 SQLite 与 worker 日志目录")
    return p.parse_args(argv)


def _templates(args: argparse.Namespace) -> list[dict[str, Any]]:
    templates = corpus_templates()
    if args.haikou:
        templates += haikou_templates()
    return templates


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.orders or (300 if args.quick else DEFAULT_ORDERS)
    run_id = uuid.uuid4().hex[:6]
    templates = _templates(args)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    result: dict[str, Any] = {"orders": n, "texts": len(templates), "quick": bool(args.quick)}
    print(f"压测语料：{len(templates)} 条诉求文本，循环生成 {n} 条工单", flush=True)
    paced_n = max(n // 4, 20)
    result.update(run_local(
        settings, messages(templates, n, f"E{run_id}"), messages(templates, paced_n, f"P{run_id}"),
        work_dir,
    ))
    print(report.render_local(result), flush=True)
    if not args.no_kafka:
        from ops.bench.kafka_bench import worker_layout
        from ops.bench.kafka_run import WARM_UP_SECONDS, run_kafka
        from streams.classify_ahead import usable_cores

        burst_seconds = args.burst_seconds or (5.0 if args.quick else 60.0)
        workers, classify_process = worker_layout(
            usable_cores(), args.workers,
            None if args.classify_process is None else args.classify_process == "on",
        )
        result.update(run_kafka(
            templates, n, run_id, PROJECT_ROOT / "var" / "bench",
            burst=args.burst, burst_seconds=burst_seconds, burst_factor=args.burst_factor,
            workers=workers, classify_process=classify_process,
            warm_up_s=0.0 if args.quick else WARM_UP_SECONDS,
        ))
        print(report.render_kafka(result), flush=True)
    result.update(report.ratios(result))
    print(report.render_goals(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(report.jsonable(result), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
