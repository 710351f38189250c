"""`hotline ingest|feed|event|topics|worker`: the Kafka edges and lifecycle events."""

from __future__ import annotations

import argparse
import atexit
import json
import uuid
from typing import Any

from hotline.masking import mask_pii
from hotline.settings import Settings
from models.tables import now_local

#: CLI event names (Chinese and English) → lifecycle event kinds
EVENT_KINDS = {
    "签收": "OrderAccepted", "accept": "OrderAccepted",
    "退单": "OrderReturned", "return": "OrderReturned",
    "反馈": "OrderReplied", "reply": "OrderReplied",
    "回访": "RevisitRecorded", "revisit": "RevisitRecorded",
    "办结": "OrderClosed", "close": "OrderClosed",
    "督办": "OrderSupervised", "supervise": "OrderSupervised",
    "派单": "OrderDispatched", "dispatch": "OrderDispatched",
}


def _need_kafka(settings: Settings) -> None:
    if not settings.kafka_bootstrap:
        raise SystemExit("未配置 Kafka：请设置 HOTLINE_KAFKA_BOOTSTRAP（例如 127.0.0.1:19092）")


def _unit_codes(settings: Settings) -> list[str]:
    from hotline.bootstrap import load_rules

    return [u.code for u in load_rules(settings).units]


def cmd_ingest(args: argparse.Namespace) -> int:
    from streams.files import read_messages
    from streams.kafka_io import ensure_topics, ingest

    settings = Settings()
    _need_kafka(settings)
    ensure_topics(settings, _unit_codes(settings))
    messages = read_messages(args.file)
    sent = ingest(settings, messages)
    print(f"已写入 {settings.topic('workorders.received')}：{sent} 条（共 {len(messages)} 条）")
    return 0 if sent == len(messages) else 1


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.kafka_io import ensure_topics, topic_names

    settings = Settings()
    codes = _unit_codes(settings)
    if args.create:
        _need_kafka(settings)
        created = ensure_topics(settings, codes)
        print(f"新建主题 {len(created)} 个")
    for name in topic_names(settings, codes):
        print(name)
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    from hotline.bootstrap import load_rules
    from streams.kafka_io import consume_feed

    settings = Settings()
    _need_kafka(settings)
    config = load_rules(settings)
    unit = config.unit_by_name.get(args.unit) or config.unit_by_code.get(args.unit)
    if unit is None:
        raise SystemExit(f"未知单位：{args.unit}")

    def show(order: dict[str, Any]) -> None:
        if args.json:
            masked = {**order, "text": mask_pii(order.get("text")), "caller": mask_pii(order.get("caller"))}
            print(json.dumps(masked, ensure_ascii=False), flush=True)
            return
        d = order.get("decision", {})
        print(
            f"[{order.get('role', '主办')}] {order['order_id']} {order.get('received_at', '')} "
            f"{order.get('title') or ''}\n    {mask_pii(order.get('text'))[:120]}\n"
            f"    主办 {d.get('lead_unit')}，协办 {'、'.join(d.get('co_units') or []) or '无'}",
            flush=True,
        )

    n = consume_feed(
        settings, unit.code, show, group=args.group, max_messages=args.max,
        idle_timeout_ms=int(args.idle_timeout * 1000),
    )
    if not args.json:
        print(f"{unit.name}：已处理 {n} 条派单")
    return 0


def build_event(args: argparse.Namespace) -> Any:
    from models.lifecycle import LifecycleEvent

    kind = EVENT_KINDS.get(args.kind)
    if kind is None:
        raise SystemExit(f"未知事件：{args.kind}（可用：{'、'.join(k for k in EVENT_KINDS if not k.isascii())}）")
    data: dict[str, Any] = {}
    if kind == "OrderReturned":
        data = {"reason": args.reason or "", "beyond_power": args.beyond_power}
        if args.suggest:
            data["suggested_unit"] = args.suggest
    elif kind == "OrderReplied":
        data = {"reply": args.reply or ""}
    elif kind == "RevisitRecorded":
        data = {"contacted": args.contacted, "solved": args.solved, "satisfaction": args.satisfaction}
    elif kind == "OrderSupervised":
        data = {"reason": args.reason or "值班长督办"}
    elif kind == "OrderDispatched":
        data = {"unit": args.unit, "co_units": args.co_unit or [], "manual": True, "by_dispatcher": True}
    return LifecycleEvent(
        event_id=args.event_id or f"{args.order}:{kind}:{uuid.uuid4().hex[:12]}",
        order_id=args.order,
        kind=kind,
        at=now_local(),
        actor=args.actor,
        data=data,
    )


def cmd_event(args: argparse.Namespace) -> int:
    event = build_event(args)
    settings = Settings()
    if settings.kafka_bootstrap:
        from streams.kafka_io import send_events

        send_events(settings, [event])
        print(f"事件已发送到 {settings.topic('workorders.events')}：{event.kind} {event.order_id}（{event.event_id}）")
        return 0
    from hotline.bootstrap import bootstrap

    app = bootstrap(settings)
    out = app.router.apply_event(event)
    if out.result.rejected is not None:
        print(f"事件被拒绝（{out.result.rejected.code}）：{out.result.rejected.reason}")
        return 1
    if out.result.duplicate:
        print("重复事件：已处理过，未作任何更改")
        return 0
    print("已记录：" + "、".join(e.kind for e in out.result.applied))
    if out.decision is not None:
        d = out.decision
        print("改派结果：" + ("转人工派单" if d.manual else f"主办 {d.lead_unit}"))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import faust

    from streams.app import create_app, tune_worker_process, use_event_loop

    settings = Settings()
    _need_kafka(settings)
    use_event_loop(settings.event_loop)  # before anything creates the loop
    if args.web_port:
        settings = settings.model_copy(update={"metrics_port": args.web_port})
    from streams.kafka_io import ensure_topics

    ensure_topics(settings, _unit_codes(settings))
    app = create_app(settings, web_bind=args.web_bind)
    _start_classifier_process(app, settings, wanted=not args.no_classify_process)
    tune_worker_process()
    worker = faust.Worker(app, loglevel=args.loglevel)
    # faust's terminal spinner sets the root logger to DEBUG (to spin on every record) when
    # the level is WARNING or above: every library's debug call then builds a log record
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


def _start_classifier_process(app: Any, settings: Settings, *, wanted: bool) -> None:
    """Fork the worker's classifier helper now, before faust starts any thread (a fork copies
    only the forking thread: a lock another thread held would stay held in the child)."""
    from streams import classify_ahead

    router = app.hotline.router
    if wanted and settings.classify_process and classify_ahead.available():
        helper = classify_ahead.ClassifierProcess(router.helper_classifier)
        router.classifier_process = helper
        atexit.register(helper.close)  # the app logs it once faust has set up logging


def register(sub: Any) -> None:
    p = sub.add_parser("ingest", help="把工单文件（JSON lines/CSV，- 为标准输入）写入 Kafka")
    p.add_argument("file")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("topics", help="列出（--create 创建）本系统的 Kafka 主题")
    p.add_argument("--create", action="store_true")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("feed", help="承办单位消费本单位的派单主题 dispatch.<代码>")
    p.add_argument("--unit", required=True, help="单位名称或代码")
    p.add_argument("--group", help="消费组（默认 unit-<代码>）")
    p.add_argument("--max", type=int, help="处理这么多条后退出")
    p.add_argument("--idle-timeout", type=float, default=0, help="空闲这么多秒后退出（0 为一直运行）")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_feed)

    p = sub.add_parser("event", help="记录生命周期事件：签收、退单、反馈、回访、办结、督办、派单")
    p.add_argument("kind", help="签收|退单|反馈|回访|办结|督办|派单")
    p.add_argument("--order", required=True, help="工单编号")
    p.add_argument("--actor", required=True, help="操作方：单位名称、dispatcher:姓名、revisit:姓名")
    p.add_argument("--reason", help="退单或督办原因")
    p.add_argument("--beyond-power", action="store_true", help="退单：街镇无力解决")
    p.add_argument("--suggest", help="退单：建议改派的单位")
    p.add_argument("--reply", help="反馈内容")
    p.add_argument("--contacted", default="已联系", choices=["已联系", "未联系"])
    p.add_argument("--solved", default="已解决", choices=["已解决", "未解决"])
    p.add_argument("--satisfaction", default="满意", choices=["满意", "基本满意", "不满意"])
    p.add_argument("--unit", help="派单：主办单位")
    p.add_argument("--co-unit", action="append", help="派单：协办单位（可重复）")
    p.add_argument("--event-id", help="事件编号（重复发送同一编号不会重复生效）")
    p.set_defaults(func=cmd_event)

    p = sub.add_parser("worker", help="启动 faust 流处理 worker（需要 Kafka）")
    p.add_argument("--loglevel", default="info")
    p.add_argument("--web-port", type=int, help="健康检查与指标端口（默认 6066）")
    p.add_argument("--web-bind", default="127.0.0.1",
                   help="健康检查与指标监听地址（默认仅本机；容器内供 Prometheus 抓取用 0.0.0.0）")
    p.add_argument("--no-classify-process", action="store_true",
                   help="在 worker 进程内分类，不启动分类子进程（默认：多核且可 fork 时启动）")
    p.set_defaults(func=cmd_worker)
