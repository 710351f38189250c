"""Small statistics helpers for the bench."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory (VmRSS) of a process, in MiB; NaN when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return math.nan
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def tree_pss_mb(pid: int) -> float:
    """Proportional set size (Pss: shared pages split between their sharers) of a process and
    all its descendants, in MiB: what a worker and its classifier process cost together,
    without counting the copy-on-write model twice. NaN when the process is gone."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            if p == pid:
                return math.nan
            continue
        total += next((int(line.split()[1]) for line in text.splitlines()
                       if line.startswith("Pss:")), 0)
        todo.extend(_children(p))
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) one process has used so far, in seconds; NaN when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat[stat.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU time the live children of a process have used so far, in seconds."""
    times = [cpu_seconds(c) for c in _children(pid)]
    return sum(t for t in times if not math.isnan(t))


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot, all cores together (user, nice,
    system, irq, softirq, steal from /proc/stat), in seconds."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def latency_windows(
    sent: dict[str, int], seen: dict[str, int], window_ms: int = 2000
) -> list[tuple[int, int, float, float]]:
    """Latencies grouped by send time: per ``window_ms`` window from the first send, its start
    (ms), the orders seen and their p50 / p99. Shows whether a slow paced phase is a backlog
    carried in from before it (high at the start, falling), a stall (a spike) or steady."""
    if not sent:
        return []
    first = min(sent.values())
    groups: dict[int, list[float]] = {}
    for key, at in sent.items():
        if key in seen:
            groups.setdefault((at - first) // window_ms, []).append(float(seen[key] - at))
    return [(w * window_ms, len(v), percentile(v, 50), percentile(v, 99))
            for w, v in sorted(groups.items())]
