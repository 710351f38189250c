"""Reading intake files: JSON lines or CSV (a 12345 export), or standard input."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any


def read_messages(path: str) -> list[Any]:
    """Raw messages from a file: one JSON object per line (kept as text for the intake to
    validate) or CSV rows (as dicts with the export's column names). `-` reads stdin."""
    if path == "-":
        data = sys.stdin.buffer.read()
        name = "stdin.jsonl"
    else:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"找不到文件：{path}")
        data = p.read_bytes()
        name = p.name
    if name.lower().endswith(".csv"):
        text = data.decode("utf-8-sig")
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    return [line for line in data.splitlines() if line.strip()]
