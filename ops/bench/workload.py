"""The bench's work orders (压测工单): the project's own Jinshan corpus texts (the sample day is
drawn from the same files), optionally the real Haikou texts read in place, cycled to any
number of intake messages with unique ids."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from streams.sample_day import CORPUS_DIR, corpus_records

HAIKOU_CSV = Path("/work/shared/data/haikou12345/workorders.csv")
BASE_TIME = datetime(2026, 11, 24, 8, 0, 0)
STEP = timedelta(seconds=20)


def corpus_templates(corpus_dir: Path = CORPUS_DIR) -> list[dict[str, Any]]:
    """One intake template per corpus record (id, unit and thread fields dropped)."""
    out: list[dict[str, Any]] = []
    for r in corpus_records(corpus_dir):
        msg = {
            "channel": r.get("channel") or "12345热线",
            "title": r.get("title") or "",
            "text": r["text"],
            "enterprise_name": r.get("enterprise_name"),
            "credit_code": r.get("credit_code"),
            "address": r.get("address"),
            "appeal_type": r.get("appeal_type"),
            "legacy": bool(r.get("legacy")),
        }
        out.append({k: v for k, v in msg.items() if v is not None})
    return out


def haikou_templates(path: Path = HAIKOU_CSV, limit: int = 2000) -> list[dict[str, Any]]:
    """Real Haikou texts (dispatcher hints stripped by the dataset loader), read in place."""
    from classifier.datasets import load_dataset

    records = load_dataset(path, "haikou12345")[:limit]
    return [{"channel": "12345热线", "title": "", "text": r.text} for r in records]


def messages(templates: list[dict[str, Any]], n: int, run: str) -> list[dict[str, Any]]:
    """``n`` intake messages cycling over ``templates``; ids ``<run>-<i>`` never repeat."""
    if not templates:
        raise ValueError("压测语料为空")
    return [
        {
            **templates[i % len(templates)],
            "order_id": f"{run}-{i:06d}",
            "received_at": (BASE_TIME + STEP * i).isoformat(timespec="seconds"),
        }
        for i in range(n)
    ]
