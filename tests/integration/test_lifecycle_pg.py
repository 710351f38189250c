"""The hostile lifecycle machine (random events, replays and ticks over `Store.apply`, with the
invariants and "snapshot == replay of the log") on PostgreSQL, the same body that
`tests/unit/test_hostile_lifecycle.py` runs on SQLite. The store contract itself runs on
PostgreSQL in `test_store_pg.py`.

One schema for the module; each hypothesis example starts from empty tables.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from sqlalchemy import create_engine, text

from models.store import Store
from tests.integration.pipeline_helpers import create_schema, drop_schema
from tests.unit.test_hostile_lifecycle import LifecycleMachine

pytestmark = pytest.mark.integration

TABLES = ("revisit", "training_label", "dead_letter", "dispatch_decision", "event_log", "work_order")
_schema_url: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def lifecycle_schema(pg_url: str) -> Iterator[str]:
    schema = create_schema(pg_url, "lifecycle")
    Store.from_url(schema.url).close()  # migrate once
    _schema_url.append(schema.url)
    try:
        yield schema.url
    finally:
        _schema_url.clear()
        drop_schema(schema)


class PgLifecycleMachine(LifecycleMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store.close()  # the SQLite store the parent opened
        url = _schema_url[0]
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
        finally:
            engine.dispose()
        self.store = Store.from_url(url, create=False)
        assert self.store.engine.dialect.name == "postgresql"


PgLifecycleMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=20, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow], report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
TestHostileLifecyclePostgres = PgLifecycleMachine.TestCase
