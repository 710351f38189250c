"""`hotline import`, `hotline bulletin`, `hotline daily`: the analysts' and duty commands.

`register(subparsers)` adds them; each handler returns an exit code. Output is Chinese; every
order text printed is masked.
"""

from __future__ import annotations

import argparse
import json
from datetime import date

from hotline.masking import mask_pii
from hotline.settings import Settings


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"日期格式应为 YYYY-MM-DD：{value!r}") from None


def _store(url: str | None) -> object:
    from models.store import Store

    return Store.from_url(url or Settings().database_url)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("import", help="导入历史工单（含处置单位与办理过程）")
    p.add_argument("--data", required=True, help="数据文件路径（只读取该文件本身）")
    p.add_argument("--format", required=True, choices=("haikou12345", "csv"), help="数据格式")
    p.add_argument("--database-url", help="数据库 URL（默认 HOTLINE_DATABASE_URL）")
    p.add_argument("--json", action="store_true", help="以 JSON 输出导入结果")
    p.set_defaults(func=cmd_import)

    p = subparsers.add_parser("bulletin", help="生成热点快报（HTML 或 Markdown）")
    p.add_argument("--from", dest="start", required=True, type=_date, help="开始日期 YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, type=_date, help="结束日期 YYYY-MM-DD（含）")
    p.add_argument("--out", required=True, help="输出文件 FILE.html 或 FILE.md")
    p.add_argument("--database-url", help="数据库 URL（默认 HOTLINE_DATABASE_URL）")
    p.set_defaults(func=cmd_bulletin)

    p = subparsers.add_parser("daily", help="每日值班小结：待决事项优先，涉企工单标注")
    p.add_argument("--date", required=True, type=_date, help="日期 YYYY-MM-DD")
    p.add_argument("--database-url", help="数据库 URL（默认 HOTLINE_DATABASE_URL）")
    p.add_argument("--json", action="store_true", help="以 JSON 输出")
    p.set_defaults(func=cmd_daily)


def cmd_import(args: argparse.Namespace) -> int:
    from bulletin.importer import import_file

    counts = import_file(_store(args.database_url), args.data, args.format)  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(counts.to_json(), ensure_ascii=False, indent=2))
        return 0
    print(f"导入完成：新增工单 {counts.new_orders} 件，未变化 {counts.unchanged_orders} 件，"
          f"记录事件 {counts.events} 条，被拒事件 {counts.rejected_events} 条。")
    if counts.new_units:
        print(f"登记历史单位 {len(counts.new_units)} 个：" + "、".join(counts.new_units[:10])
              + ("…" if len(counts.new_units) > 10 else ""))
    if counts.conflicts:
        print(f"编号已存在但内容不同（未改动）{len(counts.conflicts)} 件：" + "、".join(counts.conflicts[:10]))
    for line in counts.skipped_rows[:20]:
        print(f"跳过 {mask_pii(line)}")
    return 0


def cmd_bulletin(args: argparse.Namespace) -> int:
    from bulletin.render import write_bulletin
    from bulletin.report import build_bulletin

    b = build_bulletin(_store(args.database_url), args.start, args.end)  # type: ignore[arg-type]
    written = write_bulletin(b, args.out)
    print(f"热点快报已生成：{written[0]}（{b.start}至{b.end}，工单 {b.total} 件，"
          f"近似重复诉求组 {len(b.near_duplicates)} 个，主题 {len(b.topics)} 个）")
    for extra in written[1:]:
        print(f"  图表：{extra}")
    return 0


def cmd_daily(args: argparse.Namespace) -> int:
    from bulletin.daily import build_daily, render_daily

    summary = build_daily(_store(args.database_url), args.date)  # type: ignore[arg-type]
    if args.json:
        print(json.dumps(summary.to_json(), ensure_ascii=False, indent=2))
    else:
        print(render_daily(summary))
    return 0
