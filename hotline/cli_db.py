"""`hotline db upgrade|current`: the database schema (数据库结构) through Alembic migrations."""

from __future__ import annotations

import argparse
from typing import Any

from hotline.masking import mask_pii
from hotline.settings import Settings

_DONE = {
    "upgraded": "已升级到最新版本",
    "stamped": "已有表结构与当前一致，已登记为最新版本",
    "current": "已是最新版本，无需升级",
}


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return mask_pii(make_url(url).render_as_string(hide_password=True))


def cmd_upgrade(args: argparse.Namespace) -> int:
    from models.migrate import head_revision, migrate

    settings = Settings()
    url = args.url or settings.database_url
    done = migrate(url)
    print(f"数据库 {_safe_url(url)}：{_DONE[done]}（版本 {head_revision()}）")
    return 0


def cmd_current(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from models.migrate import current_revision, head_revision

    url = args.url or Settings().database_url
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    finally:
        engine.dispose()
    head = head_revision()
    state = "最新" if current == head else f"落后，最新为 {head}，请执行 hotline db upgrade"
    print(f"数据库 {_safe_url(url)}：当前版本 {current or '无（未迁移）'}（{state}）")
    return 0 if current == head else 1


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="数据库结构迁移（Alembic）：upgrade 升级到最新，current 查看版本")
    db = p.add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="把数据库升级到最新迁移版本（默认 HOTLINE_DATABASE_URL）")
    up.add_argument("--url", help="数据库 URL（默认取 HOTLINE_DATABASE_URL）")
    up.set_defaults(func=cmd_upgrade)
    cur = db.add_parser("current", help="查看数据库当前的迁移版本")
    cur.add_argument("--url", help="数据库 URL（默认取 HOTLINE_DATABASE_URL）")
    cur.set_defaults(func=cmd_current)
