"""The bundled sample day (样例日): Jinshan work orders written by the project itself.

Built from the held-out part of the project's corpus (`classifier/corpus/jinshan/`, every
fourth record of each unit, never used for training the bundled model) plus every record of the
repeat-complaint threads, spread over one working day, with a handful of broken messages the
intake must dead-letter. Deterministic: the same corpus gives the same day.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from classifier.bundled import is_held_out

CORPUS_DIR = Path(__file__).resolve().parent.parent / "classifier" / "corpus" / "jinshan"
SAMPLE_DATE = datetime(2026, 11, 24, 8, 0, 0)  # a Tuesday


def corpus_records(corpus_dir: Path = CORPUS_DIR) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(corpus_dir.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh if line.strip())
    return records


def is_sample(record: dict[str, Any]) -> bool:
    """Held out of the bundled model's training (see `classifier.bundled.is_held_out`)."""
    return is_held_out(str(record["id"]))


def _message(record: dict[str, Any], order_id: str, at: datetime) -> dict[str, Any]:
    msg = {
        "order_id": order_id,
        "channel": record.get("channel") or "12345热线",
        "received_at": at.isoformat(timespec="seconds"),
        "title": record.get("title") or "",
        "text": record["text"],
        "enterprise_name": record.get("enterprise_name"),
        "credit_code": record.get("credit_code"),
        "address": record.get("address"),
        "appeal_type": record.get("appeal_type"),
        "legacy": bool(record.get("legacy")),
        "corpus_id": record["id"],
        "expected_unit": record.get("unit"),
    }
    return {k: v for k, v in msg.items() if v is not None}


def _broken_messages(valid: list[dict[str, Any]], at: datetime) -> list[bytes | str | dict[str, Any]]:
    """Messages a real intake sees now and then; each must be dead-lettered with its reason."""
    first = valid[0]
    conflicting = dict(first, text=first["text"] + "（补充：情况有变化）")
    return [
        {"order_id": "JS-BAD-0001", "received_at": at.isoformat(), "text": "   "},
        {"order_id": "JS-BAD-0002", "received_at": at.isoformat(), "text": 12345},
        {"order_id": "JS-BAD-0003", "received_at": "昨天下午", "text": "小区门口垃圾桶满了没人收"},
        {"order_id": "JS-BAD-0004", "received_at": at.isoformat(), "text": "噪音" * 4000},
        b"{\"order_id\": \"JS-BAD-0005\", \"text\": \"\xb2\xbb\xca\xc7UTF-8\"}",
        "{\"order_id\": \"JS-BAD-0006\", \"text\": \"截断的消息",
        {"received_at": at.isoformat(), "text": "没有工单编号的诉求"},
        {"order_id": "JS-BAD-0008", "received_at": at.isoformat(), "text": "企业反映",
         "is_enterprise": "maybe"},
        conflicting,
        dict(valid[1]),  # an exact redelivery: not dead-lettered, just recognised as a duplicate
    ]


def build_sample_day(corpus_dir: Path = CORPUS_DIR, *, date: datetime = SAMPLE_DATE) -> list[Any]:
    """The day's intake messages in arrival order (valid and broken ones mixed)."""
    records = corpus_records(corpus_dir)
    if not records:
        raise FileNotFoundError(f"语料目录为空：{corpus_dir}")
    threads: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.get("thread"):
            threads.setdefault(r["thread"], []).append(r)
    chosen = [r for r in records if is_sample(r) and not r.get("thread")]
    rng = random.Random(20261124)
    rng.shuffle(chosen)
    # each repeat-complaint thread arrives in its own order, spread through the day
    for members in threads.values():
        members.sort(key=lambda r: r["id"])
        slots = sorted(rng.sample(range(len(chosen) + 1), len(members)))
        for offset, (slot, r) in enumerate(zip(slots, members, strict=True)):
            chosen.insert(slot + offset, r)
    span = timedelta(hours=11)  # 08:00-19:00
    step = span / max(len(chosen), 1)
    messages: list[dict[str, Any]] = [
        _message(r, f"JS{date:%Y%m%d}{i + 1:04d}", date + step * i) for i, r in enumerate(chosen)
    ]
    broken = _broken_messages(messages, date + timedelta(hours=12))
    out: list[Any] = list(messages)
    for j, b in enumerate(broken):
        out.insert((j + 1) * len(messages) // (len(broken) + 1), b)
    return out
