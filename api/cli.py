"""`hotline serve` (接口与派单台) and `hotline token` (签发/吊销访问令牌)."""

from __future__ import annotations

import argparse
import json
import sys

from hotline.settings import Settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_api
    from hotline.bootstrap import bootstrap, settle_heap

    settings = Settings()
    app = bootstrap(settings)
    settle_heap()
    api = create_api(app)
    mode = f"Kafka {settings.kafka_bootstrap}" if settings.kafka_bootstrap else "内嵌模式"
    print(
        f"接口服务启动（{mode}）：http://{args.host}:{args.port}/console/ 派单台，"
        f"/openapi.json 接口文档，/metrics 指标",
        file=sys.stderr, flush=True,
    )
    uvicorn.run(api, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from api.auth import (
        ROLE_NAMES,
        ensure_token_table,
        issue_token,
        list_tokens,
        revoke_token,
    )
    from models.store import Store

    settings = Settings()
    store = Store.from_url(settings.database_url)
    try:
        ensure_token_table(store.engine)
        if args.list:
            for row in list_tokens(store.engine):
                status = f"已吊销 {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "有效"
                print(f"{row.token_id}\t{ROLE_NAMES.get(row.role, row.role)}\t{row.name}\t{status}")
            return 0
        unit = _unit_name(settings, args.unit) if args.unit else None
        if args.revoke:
            if not revoke_token(store.engine, args.revoke, name=unit):
                print(f"未找到可吊销的令牌：{args.revoke}", file=sys.stderr)
                return 1
            print(f"已吊销令牌 {args.revoke}")
            return 0
        role, name = _role_and_name(args, unit)
        issued = issue_token(store.engine, role=role, name=name)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"token_id": issued.token_id, "token": issued.token, "role": role,
                          "name": name}, ensure_ascii=False))
        return 0
    print(issued.token)
    print(
        f"已为{ROLE_NAMES[role]}「{name}」签发令牌（编号 {issued.token_id}）。令牌只显示这一次，"
        f"请妥善保存；吊销：hotline token --revoke {issued.token_id}",
        file=sys.stderr,
    )
    return 0


def _unit_name(settings: Settings, given: str) -> str:
    from hotline.bootstrap import load_rules

    unit = load_rules(settings).unit(given)
    if unit is None:
        raise SystemExit(f"未知的承办单位：{given}（请使用单位配置中的名称或代码）")
    return unit.name


def _role_and_name(args: argparse.Namespace, unit: str | None) -> tuple[str, str]:
    if unit is not None:
        if args.role not in (None, "unit"):
            raise SystemExit("--unit 与 --role 不能同时使用")
        return "unit", unit
    if args.role not in ("dispatcher", "revisit"):
        raise SystemExit("请给出 --unit 单位名称，或 --role dispatcher|revisit 与 --name 姓名")
    if not args.name or not args.name.strip():
        raise SystemExit("--role 需要同时给出 --name 姓名")
    return args.role, args.name.strip()


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="启动 HTTP 接口、派单台网页与 /metrics")
    p.add_argument("--port", type=int, default=8080, help="监听端口（默认 8080）")
    p.add_argument("--host", default="127.0.0.1", help="监听地址（容器内用 0.0.0.0）")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("token", help="签发或吊销接口访问令牌（令牌仅保存散列值）")
    p.add_argument("--unit", help="承办单位名称或代码（签发单位令牌）")
    p.add_argument("--role", choices=["dispatcher", "revisit"], help="派单员或回访员")
    p.add_argument("--name", help="派单员/回访员姓名")
    p.add_argument("--revoke", metavar="TOKEN_ID", help="吊销该编号的令牌")
    p.add_argument("--list", action="store_true", help="列出全部令牌（不含令牌本身）")
    p.add_argument("--json", action="store_true", help="以 JSON 输出")
    p.set_defaults(func=cmd_token)
