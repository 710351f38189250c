"""The store's test body (`StoreContract`) on a real PostgreSQL.

Runs when HOTLINE_TEST_DATABASE_URL is set (the `pg_url` fixture in conftest.py); skipped outside
CI when it is unset, FAILED under CI. Each test gets its own schema, dropped afterwards, so runs
never see each other's rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from models.lifecycle import LifecycleEvent, State
from models.store import Store
from ops.pg_schema import scratch_schema
from tests.unit.test_store import T0, TOWN, StoreContract, ev, order

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    with scratch_schema(pg_url, "test_store") as url:
        yield url


class TestStorePostgres(StoreContract):
    @pytest.fixture
    def store(self, pg_schema_url: str) -> Iterator[Store]:
        s = Store.from_url(pg_schema_url)
        assert s.engine.dialect.name == "postgresql"
        yield s
        s.close()

    def test_concurrent_events_on_one_order_are_serialised(self, store: Store) -> None:
        """Two workers racing on the same order: both events land, none is lost or doubled."""
        store.add_order(order())
        assert store.apply(ev("OrderDispatched", unit=TOWN)).applied
        events = [
            LifecycleEvent(f"race-{i}", "GD1", "OrderSupervised", T0 + timedelta(minutes=i),
                           f"dispatcher:{i}", {"reason": f"督办 {i}"})
            for i in range(6)
        ]
        barrier = threading.Barrier(len(events))
        results = []

        def send(e: LifecycleEvent) -> None:
            barrier.wait()
            results.append(store.apply(e))

        threads = [threading.Thread(target=send, args=(e,)) for e in events]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.applied and r.rejected is None for r in results)
        row = store.get_order("GD1")
        assert row is not None and row.state == State.DISPATCHED.value
        assert row.version == 2 + len(events) and row.supervised
        assert len(store.history("GD1")) == 2 + len(events)


    def test_a_tick_skips_an_order_another_transaction_holds_and_takes_it_next_time(
        self, store: Store, pg_schema_url: str
    ) -> None:
        """An order locked by a worker mid-write is left for the next tick: the tick neither
        waits for the lock nor writes over it."""
        from sqlalchemy import create_engine, text

        store.add_order(order())
        store.add_order(order("GD2", text="另一件诉求", credit_code=None))
        self.dispatch(store)
        self.dispatch(store, "GD2")
        other = create_engine(pg_schema_url)
        try:
            with other.connect() as conn, conn.begin():
                conn.execute(text("SELECT id FROM work_order WHERE id = 'GD1' FOR UPDATE"))
                started = time.monotonic()
                first = store.tick_deadlines(T0 + timedelta(days=2))
                assert time.monotonic() - started < 5  # no lock wait (lock_timeout is unset)
                assert {r.applied[0].order_id for r in first} == {"GD2"}
            second = store.tick_deadlines(T0 + timedelta(days=2))
            assert {r.applied[0].order_id for r in second} == {"GD1"}
        finally:
            other.dispose()
        assert {o.id for o in store.queue("overdue")} == {"GD1", "GD2"}


def terminate_backend(url: str, pid: int) -> bool:
    """Terminate the server process ``pid`` from another connection to ``url`` (the holder of
    its connection does not know yet). True when PostgreSQL terminated it."""
    from sqlalchemy import create_engine, text

    admin = create_engine(url)
    try:
        with admin.connect() as other:
            return bool(other.execute(text("SELECT pg_terminate_backend(:pid)"),
                                      {"pid": pid}).scalar_one())
    finally:
        admin.dispose()


def _kill_pool_connection(store: Store, url: str) -> bool:
    """Leave ``store``'s pool with one connection and terminate its server process (the pool
    does not know yet). True when PostgreSQL terminated it."""
    from sqlalchemy import text

    store.engine.dispose()  # the next checkout opens the pool's only connection
    with store.engine.connect() as conn:  # checked in again after
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return terminate_backend(url, pid)


def test_a_connection_killed_while_idle_in_the_pool_is_replaced(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pooled connection idle for `PING_IDLE_S` is pinged at checkout and, dead, replaced:
    the next call works without the caller seeing the restart."""
    import models.store as store_module

    monkeypatch.setattr(store_module, "PING_IDLE_S", 0.2)
    store = Store.from_url(pg_schema_url)
    try:
        assert _kill_pool_connection(store, pg_schema_url)
        time.sleep(0.3)
        assert store.add_order(order()) == "new"
    finally:
        store.close()


def test_a_connection_killed_just_after_use_fails_once_then_works(pg_schema_url: str) -> None:
    """One checked in moments ago is handed out unpinged: its statement fails as a
    disconnect (what a worker's retry handles), and the next call gets a new connection."""
    from sqlalchemy.exc import OperationalError

    store = Store.from_url(pg_schema_url)
    try:
        assert _kill_pool_connection(store, pg_schema_url)
        with pytest.raises(OperationalError):
            store.add_order(order())
        assert store.add_order(order()) == "new"
    finally:
        store.close()


def test_a_batch_written_on_a_dead_connection_fails_as_a_disconnect_then_works(
    pg_schema_url: str,
) -> None:
    """A batch written on a pooled connection whose server process died fails as SQLAlchemy's
    disconnect: a worker retries it (`is_transient`) instead of dead-lettering the orders as
    poison, and the retry gets a new connection. (The bulk rows' own error path is shown in
    `test_bulk_pg.py`: here the session notices the dead connection first.)"""
    from sqlalchemy.exc import OperationalError

    from streams.faults import is_transient
    from tests.unit.test_store import TOWN, decision

    store = Store.from_url(pg_schema_url)
    items = [(order(), True, decision(), ev("OrderDispatched", unit=TOWN))]
    try:
        assert _kill_pool_connection(store, pg_schema_url)
        with pytest.raises(OperationalError) as failed:
            store.dispatch_batch(items)
        assert is_transient(failed.value)
        [result] = store.dispatch_batch(items) or []
        assert [e.kind for e in result.applied] == ["OrderReceived", "OrderDispatched"]
        assert store.get_order("GD1").state == State.DISPATCHED.value  # type: ignore[union-attr]
    finally:
        store.close()
