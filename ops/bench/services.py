"""Kafka and PostgreSQL for the bench: reuse running ones, else start them with the ops scripts
and stop (only) what was started here."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
KAFKA_SH = ROOT / "ops" / "kafka" / "kafka.sh"
PG_SH = ROOT / "ops" / "postgres" / "pg.sh"
KAFKA_BOOTSTRAP = "127.0.0.1:19092"


def _script(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(path), *args], capture_output=True, text=True, cwd=ROOT, check=False
    )


def _ensure(path: Path, name: str, extra: tuple[str, ...] = ()) -> bool:
    """True when this call started the service (and so may stop it afterwards)."""
    status = _script(path, "status")
    if status.returncode == 0:
        return False
    if "but not answering" in status.stdout:  # someone else's broker is still starting
        _script(path, "wait")
        return False
    started = True
    for step in ("start", *extra):
        done = _script(path, step)
        if done.returncode != 0:
            raise RuntimeError(f"{name} 启动失败（{step}）：{done.stderr.strip()[-500:]}")
        if step == "start" and "already running" in done.stdout:
            # the status probe failed (a busy server answers slowly) but the server was up:
            # it is someone else's, never ours to stop
            started = False
    return started


@dataclass
class Services:
    kafka_bootstrap: str
    pg_url: str
    started: list[str] = field(default_factory=list)


@contextmanager
def services(*, need_pg: bool = True) -> Iterator[Services]:
    """Kafka (and PostgreSQL) for the duration of the block."""
    started: list[str] = []
    try:
        if _ensure(KAFKA_SH, "Kafka", ("wait",)):
            started.append("kafka")
        if need_pg and _ensure(PG_SH, "PostgreSQL"):
            started.append("postgres")
        pg_url = _script(PG_SH, "url").stdout.strip()
        yield Services(kafka_bootstrap=KAFKA_BOOTSTRAP, pg_url=pg_url, started=started)
    finally:
        for name in reversed(started):
            _script(KAFKA_SH if name == "kafka" else PG_SH, "stop")
