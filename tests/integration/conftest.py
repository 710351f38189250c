"""Integration tier (集成测试): real Apache Kafka and PostgreSQL on loopback.

Services come from environment variables that `.ci/run` exports after starting them:

- ``HOTLINE_TEST_KAFKA``: Kafka bootstrap, e.g. ``127.0.0.1:19092`` (``ops/kafka/kafka.sh``)
- ``HOTLINE_TEST_DATABASE_URL``: SQLAlchemy URL, e.g.
  ``postgresql+psycopg://hotline:hotline@127.0.0.1:55432/hotline`` (``ops/postgres/pg.sh``)

Outside CI a missing or unreachable service skips the test with the command that starts it.
Under CI (env ``CI`` set) the same condition FAILS the test: CI must never pass by skipping.
Every test collected under ``tests/integration`` gets the ``integration`` marker.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import NoReturn
from pathlib import Path

import pytest

KAFKA_ENV = "HOTLINE_TEST_KAFKA"
DATABASE_ENV = "HOTLINE_TEST_DATABASE_URL"
PROBE_TIMEOUT_S = 5

KAFKA_HOW = (
    "start it with `bash ops/kafka/kafka.sh start && bash ops/kafka/kafka.sh wait` and run "
    f"with {KAFKA_ENV}=127.0.0.1:19092"
)
DATABASE_HOW = (
    "start it with `bash ops/postgres/pg.sh start` and run with "
    f"{DATABASE_ENV}=postgresql+psycopg://hotline:hotline@127.0.0.1:55432/hotline"
)

_INTEGRATION_DIR = Path(__file__).resolve().parent


def running_in_ci() -> bool:
    """True when the `CI` environment variable is set to anything but an explicit no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def service_unavailable(service: str, reason: str, how: str) -> NoReturn:
    """Skip outside CI, fail under CI; always names the service, the cause and the fix."""
    message = f"{service} unavailable: {reason}; {how}"
    if running_in_ci():
        pytest.fail(f"[CI] {message}", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as `integration`."""
    for item in items:
        if _INTEGRATION_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


def probe_kafka(bootstrap: str) -> str | None:
    """None when an admin client can list topics on `bootstrap`, else the error text."""
    from kafka import KafkaAdminClient

    timeout_ms = PROBE_TIMEOUT_S * 1000
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="hotline-test-probe",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception as exc:  # any client error means the broker cannot serve the tests
        return f"{type(exc).__name__}: {exc}"
    return None


def probe_database(url: str) -> str | None:
    """None when `SELECT 1` succeeds on `url`, else the error text."""
    from sqlalchemy import create_engine, text

    connect_args = {"connect_timeout": PROBE_TIMEOUT_S} if url.startswith("postgresql") else {}
    engine = create_engine(url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the database cannot serve the tests
        return f"{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of the test broker (from HOTLINE_TEST_KAFKA), checked reachable."""
    bootstrap = os.environ.get(KAFKA_ENV, "").strip()
    if not bootstrap:
        service_unavailable("Kafka", f"{KAFKA_ENV} is not set", KAFKA_HOW)
    error = probe_kafka(bootstrap)
    if error is not None:
        service_unavailable("Kafka", f"{bootstrap} does not answer ({error})", KAFKA_HOW)
    return bootstrap


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the test PostgreSQL (from HOTLINE_TEST_DATABASE_URL), checked."""
    url = os.environ.get(DATABASE_ENV, "").strip()
    if not url:
        service_unavailable("PostgreSQL", f"{DATABASE_ENV} is not set", DATABASE_HOW)
    error = probe_database(url)
    if error is not None:
        service_unavailable("PostgreSQL", f"the database does not answer ({error})", DATABASE_HOW)
    return url


def make_topic_prefix(label: str) -> str:
    """A topic prefix no other test or run shares: `it-<label>-<random>.`.

    Only letters, digits and '-' before the final '.', so Kafka's '.'/'_' collision warning
    never fires, and short enough to leave room for the topic names after it.
    """
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", label).strip("-").lower()[:40] or "test"
    return f"it-{slug}-{uuid.uuid4().hex[:10]}."


@pytest.fixture
def unique_topic_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh topic prefix for this test (use as HOTLINE_TOPIC_PREFIX / Settings.topic_prefix)."""
    yield make_topic_prefix(request.node.name)
