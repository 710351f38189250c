"""The bench stops only the services it started itself (ops.bench.services)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ops.bench import services


def fake_scripts(
    monkeypatch: pytest.MonkeyPatch, outputs: dict[str, tuple[int, str]]
) -> list[str]:
    calls: list[str] = []

    def script(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        calls.append(args[0])
        rc, out = outputs.get(args[0], (0, ""))
        return subprocess.CompletedProcess(["bash", str(path), *args], rc, out, "")

    monkeypatch.setattr(services, "_script", script)
    return calls


def test_a_running_service_is_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_scripts(monkeypatch, {"status": (0, "ready")})
    assert services._ensure(services.PG_SH, "PostgreSQL") is False
    assert calls == ["status"]


def test_a_service_found_running_by_start_is_not_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy server may miss the status probe; `start` then finds it running."""
    fake_scripts(monkeypatch, {"status": (1, "postgres: not running"),
                               "start": (0, "postgres: already running on 127.0.0.1:55432")})
    assert services._ensure(services.PG_SH, "PostgreSQL") is False


def test_a_service_started_here_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_scripts(monkeypatch, {"status": (1, "kafka: not running"),
                                       "start": (0, "kafka: started (pid 42)")})
    assert services._ensure(services.KAFKA_SH, "Kafka", ("wait",)) is True
    assert calls == ["status", "start", "wait"]
