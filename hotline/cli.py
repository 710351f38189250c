"""`hotline`: the command line (命令行). Chinese output for people, `--json` for machines."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from hotline.masking import mask_pii
from hotline.settings import PROJECT_ROOT, Settings


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


# ---- hotline run --------------------------------------------------------------------------
def _classify_ahead(args: argparse.Namespace, settings: Settings) -> bool:
    """``--classify-ahead`` / ``--no-classify-ahead`` when given, else the setting
    (``HOTLINE_CLASSIFY_PROCESS``, on by default); the runner still needs `fork` and a second
    usable core (`streams.classify_ahead.available`)."""
    return settings.classify_process if args.classify_ahead is None else args.classify_ahead


def cmd_run(args: argparse.Namespace) -> int:
    from hotline.bootstrap import bootstrap, settle_heap
    from streams import summary
    from streams.runner import EmbeddedRunner, run_sample_day
    from streams.sample_day import build_sample_day

    settings = Settings()
    if args.input:
        app = bootstrap(settings)
        settle_heap()
        runner = EmbeddedRunner(app.router, classify_ahead=_classify_ahead(args, settings))
        runner.ingest(_read_messages(args.input))
        report = runner.report
    else:
        db = PROJECT_ROOT / "var" / "sample-day.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        if not args.keep and db.exists():
            db.unlink()
        settings = settings.model_copy(update={"database_url": f"sqlite:///{db}"})
        app = bootstrap(settings)
        settle_heap()
        if args.metrics_port:
            _serve_metrics(app, args.metrics_port)
        print(f"回放样例日：{len(build_sample_day())} 条消息（模型 {app.router.classifier.version}）")
        territorial = {u.name for u in app.router.config.territorial_units}
        report = run_sample_day(app.router, build_sample_day(), territorial,
                                classify_ahead=_classify_ahead(args, settings))
    data = summary.build(app.router, report)
    if args.json:
        _print_json(data)
    else:
        print(summary.render(data))
    if args.metrics_port and args.hold:
        print(f"指标服务运行中：http://127.0.0.1:{args.metrics_port}/metrics（Ctrl-C 退出）")
        try:
            import time

            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def _serve_metrics(app: Any, port: int) -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr="127.0.0.1", registry=app.router.metrics.registry)


def _read_messages(path: str) -> list[Any]:
    from streams.files import read_messages

    return read_messages(path)


# ---- hotline route ------------------------------------------------------------------------
def cmd_route(args: argparse.Namespace) -> int:
    from models.tables import now_local

    from hotline.bootstrap import load_classifier, load_rules, model_thresholds
    from models.records import OrderIn, RoutingContext
    from routing_rules.engine import RoutingEngine

    settings = Settings()
    config = load_rules(settings)
    model = load_classifier(settings)
    order = OrderIn(
        order_id=args.order_id,
        channel=args.channel,
        received_at=now_local(),
        title="",
        text=args.text,
        enterprise_name=args.enterprise,
        credit_code=args.credit_code,
        address=args.address,
        area=args.area,
        is_enterprise=bool(args.enterprise or args.credit_code),
        legacy=args.legacy,
    )
    prediction = model.predict([order], k=3)[0]
    ctx = RoutingContext(
        repeat_count=args.repeat,
        returned_by=tuple(args.returned_by or ()),
        beyond_power=args.beyond_power,
    )
    thresholds = model_thresholds(model) if config.settings.thresholds_from_model else None
    decision = RoutingEngine(config).decide(order, prediction, ctx, model_thresholds=thresholds)
    if args.json:
        _print_json(decision.to_json())
        return 0
    print(f"工单：{mask_pii(args.text)[:80]}")
    if decision.manual:
        print("派单结果：转人工派单（置信度不足或规则要求人工研判）")
    else:
        co = "、".join(decision.co_units) or "无"
        print(f"派单结果：主办 {decision.lead_unit}；协办 {co}")
    if decision.line_first:
        print(f"条线部门为主：是（触发：{decision.trigger}）")
    print(f"属地街镇：{decision.territorial_unit or '未识别'}；条线建议：{decision.line_unit or '无'}")
    print("候选单位：" + "，".join(f"{c.unit} {c.probability:.2f}" for c in decision.candidates))
    if decision.rules:
        print("命中规则：" + "，".join(decision.rules))
    if decision.terms:
        print("关键词：" + "，".join(t for t, _ in decision.terms[:8]))
    for reason in decision.reasons:
        print(f"  · {reason}")
    print(f"模型版本：{decision.model_version}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description="12345 涉企工单智能派单与闭环管理")
    parser.add_argument("-v", "--verbose", action="store_true", help="输出调试日志")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="内嵌模式运行：回放样例日（或 --input 文件）并输出运行小结")
    p.add_argument("--input", help="JSON lines 或 CSV 工单文件（不给则回放内置样例日）")
    p.add_argument("--keep", action="store_true", help="保留上次样例日数据库，不重建")
    p.add_argument("--metrics-port", type=int, help="在此端口提供 Prometheus 指标")
    p.add_argument("--hold", action="store_true", help="运行结束后保持指标服务")
    p.add_argument("--classify-ahead", action=argparse.BooleanOptionalAction, default=None,
                   help="另起一个进程预先分类后续批次（默认：有第二个可用 CPU 核时开启；"
                        "--no-classify-ahead 在本进程内分类）")
    p.add_argument("--json", action="store_true", help="以 JSON 输出小结")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("route", help="对一条诉求给出派单决定及理由")
    p.add_argument("text", help="诉求内容")
    p.add_argument("--enterprise", help="企业名称")
    p.add_argument("--credit-code", help="统一社会信用代码")
    p.add_argument("--address", help="诉求地址")
    p.add_argument("--area", help="属地街镇（已知时）")
    p.add_argument("--channel", default="12345热线", help="来源渠道")
    p.add_argument("--legacy", action="store_true", help="历史遗留问题")
    p.add_argument("--repeat", type=int, default=1, help="窗口期内同一企业同类诉求次数（含本次）")
    p.add_argument("--returned-by", action="append", help="已退单的单位（可重复）")
    p.add_argument("--beyond-power", action="store_true", help="街镇以无力解决退回")
    p.add_argument("--order-id", default="CLI-ROUTE", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="以 JSON 输出（含 lead_unit）")
    p.set_defaults(func=cmd_route)

    from classifier.cli import register as register_classifier

    register_classifier(sub)
    from hotline.cli_kafka import register as register_kafka

    register_kafka(sub)
    from bulletin.cli import register as register_bulletin

    register_bulletin(sub)
    from api.cli import register as register_api

    register_api(sub)
    from hotline.cli_db import register as register_db

    register_db(sub)
    from hotline.cli_models import register as register_models

    register_models(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear message for people; the traceback with -v
        if args.verbose:
            raise
        name = type(exc).__name__
        print(f"错误（{name}）：{mask_pii(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
