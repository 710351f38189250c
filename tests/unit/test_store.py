"""The store on SQLite. `StoreContract` is the test body; tests/integration/test_store_pg.py runs
the same body on PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from models.lifecycle import LifecycleEvent, State
from models.records import Candidate, Decision, OrderIn
from models.store import QUEUES, ConflictingOrder, OrderNotFound, Store, content_hash
from streams.handlers import order_from_row

T0 = datetime(2025, 3, 3, 9, 0)  # a Monday
TOWN = "朱泾镇"
BUREAU = "区市场监管局"
_ids = itertools.count(1)


def order(order_id: str = "GD1", **kw: Any) -> OrderIn:
    base: dict[str, Any] = dict(
        order_id=order_id, channel="12345热线", received_at=T0, title="企业反映",
        text="园区道路破损影响货车通行", enterprise_name="上海某某精细化工有限公司",
        credit_code="91310116MA1J00000X", is_enterprise=True, appeal_type="投诉",
    )
    base.update(kw)
    return OrderIn(**base)


def ev(kind: str, actor: str = "system", order_id: str = "GD1", at: datetime = T0,
       **data: Any) -> LifecycleEvent:
    return LifecycleEvent(f"s{next(_ids)}", order_id, kind, at, actor, data)


def decision(order_id: str = "GD1", unit: str | None = TOWN) -> Decision:
    return Decision(
        order_id=order_id, lead_unit=unit, co_units=(BUREAU,), manual=unit is None,
        rules=("R-LOCAL",), reasons=("属地街镇办理",), model_version="m-test",
        candidates=(Candidate(BUREAU, 0.6), Candidate(TOWN, 0.3)),
        terms=(("道路", 0.4),), territorial_unit=TOWN, appeal_type="投诉", confidence=0.6,
    )


class StoreContract:
    """Store behaviour every backend must show. Subclasses provide the ``store`` fixture."""

    def dispatch(self, store: Store, order_id: str = "GD1", unit: str = TOWN) -> None:
        assert store.apply(ev("OrderDispatched", order_id=order_id, unit=unit)).applied

    def to_replied(self, store: Store, order_id: str = "GD1") -> None:
        self.dispatch(store, order_id)
        assert store.apply(ev("OrderAccepted", TOWN, order_id)).applied
        assert store.apply(ev("OrderReplied", TOWN, order_id, at=T0 + timedelta(days=1),
                              reply="已修复路面")).applied

    def test_add_order_new_duplicate_and_conflict(self, store: Store) -> None:
        assert store.add_order(order()) == "new"
        assert store.add_order(order(extra={"trace": "x"})) == "duplicate"
        with pytest.raises(ConflictingOrder):
            store.add_order(order(text="完全不同的诉求内容"))
        row = store.get_order("GD1")
        assert row is not None and row.state == State.RECEIVED.value
        assert row.text == "园区道路破损影响货车通行" and row.is_enterprise
        assert [e.kind for e in store.history("GD1")] == ["OrderReceived"]
        assert store.get_order("nope") is None
        with pytest.raises(OrderNotFound):
            store.lifecycle("nope")

    def test_apply_writes_events_and_snapshot(self, store: Store) -> None:
        store.add_order(order())
        assert store.apply(ev("OrderDispatched", unit=TOWN), decision=decision()).applied
        row = store.get_order("GD1")
        assert row is not None
        assert (row.state, row.lead_unit, row.co_units) == (State.DISPATCHED.value, TOWN, [])
        assert row.deadlines == {"签收": "2025-03-04T09:00:00"}
        assert row.model_version == "m-test" and row.version == 2
        lc = store.lifecycle("GD1")
        assert lc.state is State.DISPATCHED and lc.deadlines["签收"] == datetime(2025, 3, 4, 9)
        assert len(store.decisions("GD1")) == 1

    def test_duplicate_event_changes_nothing(self, store: Store) -> None:
        store.add_order(order())
        event = ev("OrderDispatched", unit=TOWN)
        first = store.apply(event)
        second = store.apply(event)
        assert first.applied == [event] and not first.duplicate
        assert second.duplicate and second.applied == [] and second.rejected is None
        assert len(store.history("GD1")) == 2 and store.lifecycle("GD1").version == 2

    def test_rejection_is_recorded_once_and_returned(self, store: Store) -> None:
        store.add_order(order())
        self.dispatch(store)
        early = ev("RevisitRecorded", "revisit:王", contacted="已联系", solved="已解决",
                   satisfaction="满意")
        result = store.apply(early)
        assert result.rejected is not None and result.rejected.code == "invalid_transition"
        assert result.applied == []
        again = store.apply(early)
        assert again.duplicate and again.rejected is None
        rejected = [e for e in store.history("GD1") if not e.accepted]
        assert len(rejected) == 1
        assert rejected[0].rejection_code == "invalid_transition"
        assert "已反馈" in (rejected[0].rejection_reason or "")
        assert store.get_order("GD1").state == State.DISPATCHED.value  # type: ignore[union-attr]

    def test_event_for_unknown_order_is_recorded_as_rejected(self, store: Store) -> None:
        result = store.apply(ev("OrderAccepted", TOWN, order_id="GHOST"))
        assert result.rejected is not None and result.rejected.code == "unknown_order"
        assert [e.accepted for e in store.history("GHOST")] == [False]

    def test_full_loop_with_revisit_row(self, store: Store) -> None:
        store.add_order(order())
        self.to_replied(store)
        assert [o.id for o in store.queue("revisit_due")] == ["GD1"]
        closed = store.apply(ev("OrderClosed", "dispatcher:李"))
        assert closed.rejected is not None and closed.rejected.code == "revisit_required"
        store.apply(ev("RevisitRecorded", "revisit:王", contacted="已联系", solved="已解决",
                       satisfaction="满意"))
        row = store.get_order("GD1")
        assert row is not None and row.state == State.CLOSED.value and row.next_due is None
        [visit] = store.revisits("GD1")
        assert (visit.by, visit.satisfaction) == ("revisit:王", "满意")

    def test_reopen_twice_sets_supervision_and_queues(self, store: Store) -> None:
        store.add_order(order())
        self.to_replied(store)
        result = store.apply(ev("RevisitRecorded", "revisit:王", contacted="未联系"))
        assert [e.kind for e in result.applied] == ["RevisitRecorded", "OrderReopened"]
        assert [o.id for o in store.queue("reopened")] == ["GD1"]
        assert store.queue("supervised") == []
        store.apply(ev("OrderAccepted", TOWN))
        store.apply(ev("OrderReplied", TOWN, reply="再次处理"))
        result = store.apply(ev("RevisitRecorded", "revisit:王", contacted="已联系",
                                solved="未解决", satisfaction="不满意"))
        assert [e.kind for e in result.applied][-1] == "OrderSupervised"
        assert [o.id for o in store.queue("supervised")] == ["GD1"]
        assert len(store.revisits("GD1")) == 2

    def test_two_returns_go_to_the_manual_queue(self, store: Store) -> None:
        store.add_order(order())
        self.dispatch(store)
        store.apply(ev("OrderReturned", TOWN, reason="无力解决", beyond_power=True))
        assert [o.id for o in store.queue("manual")] == ["GD1"]
        refused = store.apply(ev("OrderDispatched", unit=TOWN))
        assert refused.rejected is not None and refused.rejected.code == "returned_unit"
        self.dispatch(store, unit=BUREAU)
        store.apply(ev("OrderReturned", BUREAU, reason="非本部门职责"))
        row = store.get_order("GD1")
        assert row is not None and row.state == State.MANUAL.value
        assert row.returned_units == [TOWN, BUREAU] and row.return_count == 2
        auto = store.apply(ev("OrderDispatched", unit="区建管委"))
        assert auto.rejected is not None and auto.rejected.code == "dispatcher_decision_required"
        ok = store.apply(ev("OrderDispatched", "dispatcher:李", unit="区建管委", by_dispatcher=True,
                            manual=True))
        assert ok.applied and store.queue("manual") == []

    def test_tick_deadlines_records_overdue_once(self, store: Store) -> None:
        store.add_order(order())
        store.add_order(order("GD2", text="另一件诉求", credit_code=None))
        self.dispatch(store)
        self.dispatch(store, "GD2")
        store.apply(ev("OrderAccepted", TOWN, "GD2"))
        assert store.tick_deadlines(datetime(2025, 3, 4, 8, 59)) == []
        results = store.tick_deadlines(datetime(2025, 3, 4, 9, 0))
        assert [[e.kind for e in r.applied] for r in results] == [
            ["DeadlinePassed", "OrderSupervised"]]
        assert store.tick_deadlines(datetime(2025, 3, 5)) == []
        assert [o.id for o in store.queue("overdue")] == ["GD1"]
        late = store.tick_deadlines(datetime(2025, 4, 1))  # GD2's 办结 (10 working days)
        assert [r.applied[0].data["deadline"] for r in late] == ["办结"]
        assert {o.id for o in store.queue("overdue")} == {"GD1", "GD2"}

    def test_tick_deadlines_with_a_limit_takes_the_earliest_due_first(self, store: Store) -> None:
        store.add_order(order())
        store.add_order(order("GD2", text="另一件诉求", credit_code=None,
                              received_at=T0 + timedelta(hours=1)))
        self.dispatch(store)
        self.dispatch(store, "GD2")
        first = store.tick_deadlines(datetime(2025, 3, 5), limit=1)
        assert [r.applied[0].order_id for r in first] == ["GD1"]
        assert [r.applied[0].order_id for r in store.tick_deadlines(datetime(2025, 3, 5))] == [
            "GD2"]

    def test_a_tick_records_each_passed_deadline_once(
        self, store: Store
    ) -> None:
        """Many orders: each passed deadline once, the earliest due first, with its 督办, each
        order's version counting its recorded events; a tick again adds none."""
        for i in range(5):
            store.add_order(order(f"GD{i}", text=f"诉求{i}", credit_code=None,
                                  received_at=T0 + timedelta(minutes=i)))
            self.dispatch(store, f"GD{i}")
        store.apply(ev("OrderAccepted", TOWN, "GD3"))  # its 签收 met: 办结 is due, later
        results = store.tick_deadlines(datetime(2025, 4, 1))
        assert [(r.applied[0].order_id, r.applied[0].data["deadline"]) for r in results] == [
            ("GD0", "签收"), ("GD1", "签收"), ("GD2", "签收"), ("GD4", "签收"), ("GD3", "办结")]
        assert all([e.kind for e in r.applied] == ["DeadlinePassed", "OrderSupervised"]
                   for r in results)
        assert all(r.rejected is None and not r.duplicate for r in results)
        for i in range(5):
            row = store.get_order(f"GD{i}")
            assert row is not None and row.next_due is None
            assert row.version == len([e for e in store.history(f"GD{i}") if e.accepted])
        assert store.tick_deadlines(datetime(2025, 4, 2)) == []

    def test_a_tick_that_meets_a_concurrent_writer_does_each_order_on_its_own(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.add_order(order())
        store.add_order(order("GD2", text="另一件诉求", credit_code=None))
        self.dispatch(store)
        self.dispatch(store, "GD2")
        monkeypatch.setattr(store, "_tick_batch", lambda moment, limit: None)
        results = store.tick_deadlines(datetime(2025, 3, 5))
        assert sorted(r.applied[0].order_id for r in results) == ["GD1", "GD2"]
        monkeypatch.undo()
        assert store.tick_deadlines(datetime(2025, 3, 5)) == []
        assert {o.id for o in store.queue("overdue")} == {"GD1", "GD2"}

    def test_queue_size_counts_what_queue_lists(self, store: Store) -> None:
        store.add_order(order())
        store.add_order(order("GD2", text="另一件诉求", credit_code=None))
        store.add_order(order("GD3", text="第三件诉求", credit_code=None))
        self.dispatch(store)
        self.dispatch(store, "GD2")
        store.tick_deadlines(datetime(2025, 3, 5))
        sizes = {name: store.queue_size(name) for name in QUEUES}
        assert sizes == {name: len(store.queue(name)) for name in QUEUES}
        assert sizes["overdue"] == 2 and sizes["new"] == 1

    def test_repeat_count_by_credit_code_else_name(self, store: Store) -> None:
        store.add_order(order("A1"))
        store.add_order(order("A2", text="二次反映", received_at=T0 + timedelta(days=5)))
        store.add_order(order("A3", text="无信用代码", credit_code=None,
                              received_at=T0 + timedelta(days=6)))
        store.add_order(order("A4", text="很久以前", received_at=T0 - timedelta(days=90)))
        store.add_order(order("B1", text="别家企业", credit_code="91310116MA1J99999Y",
                              enterprise_name="另一家公司"))
        window = dict(since=T0 - timedelta(days=30), until=T0 + timedelta(days=7))
        assert store.repeat_count(credit_code="91310116MA1J00000X",
                                  enterprise_name="上海某某精细化工有限公司", **window) == 3
        assert store.repeat_count(credit_code=None, enterprise_name="上海某某精细化工有限公司",
                                  **window) == 3
        assert store.repeat_count(credit_code=None, enterprise_name=None, **window) == 0

    def test_queues_new_and_dispatched_and_counts(self, store: Store) -> None:
        store.add_order(order("N1"))
        store.add_order(order("N2", text="第二件", is_enterprise=False))
        self.dispatch(store, "N2")
        assert [o.id for o in store.queue("new")] == ["N1"]
        assert [o.id for o in store.queue("dispatched")] == ["N2"]
        counts = store.counts()
        assert counts["by_state"] == {State.RECEIVED.value: 1, State.DISPATCHED.value: 1}
        assert counts["by_unit"] == {TOWN: 1}
        assert [o.id for o in store.unit_orders(TOWN)] == ["N2"]
        with pytest.raises(ValueError, match="未知队列"):
            store.queue("everything")

    def test_units_training_labels_and_dead_letters(self, store: Store) -> None:
        store.sync_units([("SCJGJ", BUREAU, "line", "市场监管", []),
                          ("ZJZ", TOWN, "territorial", "", ["朱泾镇"])])
        store.sync_units([("ZJZ", TOWN, "territorial", "属地", ["朱泾镇", "朱泾"])])
        assert [(u.code, u.areas) for u in store.units()] == [("ZJZ", ["朱泾镇", "朱泾"])]
        assert len(store.units(active_only=False)) == 2
        with pytest.raises(ValueError):
            store.sync_units([("X", "某单位", "county", "", [])])
        label_id = store.add_training_label(order_id="GD1", text="路面破损", unit=BUREAU,
                                            source="manual_dispatch", actor="dispatcher:李")
        assert label_id > 0 and store.training_labels()[0].unit == BUREAU
        with pytest.raises(ValueError):
            store.add_training_label(order_id="GD1", text="x", unit=BUREAU, source="guess",
                                     actor="a")
        store.dead_letter(source="intake", reason="EMPTY_TEXT: 诉求内容为空", payload="{}")
        assert store.dead_letters()[0].reason.startswith("EMPTY_TEXT")

    def test_aware_times_are_stored_as_china_local(self, store: Store) -> None:

        store.add_order(order(received_at=datetime(2025, 3, 3, 1, 0, tzinfo=UTC)))
        row = store.get_order("GD1")
        assert row is not None and row.received_at == datetime(2025, 3, 3, 9, 0)
        assert store.add_order(order()) == "duplicate"  # same instant, naive local


    def test_dispatch_batch_stores_what_the_one_by_one_path_stores(self, store: Store) -> None:
        """The batch path's bulk inserts bind every type (JSON, times, booleans) as the ORM path
        does: two identical orders, one each way, read back the same. The text has what a bulk
        path must escape (tab, newline, backslash, a literal \\N, quotes)."""
        one = order("GD1", extra={"来源": "热线", "urgent": True, "备注": "a\tb\\N"},
                    text="路面破损\t影响通行\n第二行 C:\\temp \\N 结束", title='"引号"\r')
        two = OrderIn(**{**one.__dict__, "order_id": "GD2"})
        digests: dict[str, str] = {}
        assert store.admit([two], digests) == ["new"]
        route = ev("OrderDispatched", order_id="GD2", unit=TOWN, co_units=[BUREAU])
        [result] = store.dispatch_batch([(two, True, decision("GD2"), route)], digests) or []
        assert [e.kind for e in result.applied] == ["OrderReceived", "OrderDispatched"]
        store.add_order(one)
        store.apply(ev("OrderDispatched", unit=TOWN, co_units=[BUREAU]), decision=decision())
        skip = {"id", "created_at", "updated_at"}
        a, b = store.get_order("GD1"), store.get_order("GD2")
        assert a is not None and b is not None
        assert {k: v for k, v in a.model_dump().items() if k not in skip} == {
            k: v for k, v in b.model_dump().items() if k not in skip
        }
        assert b.content_hash == content_hash(two) and b.extra == one.extra
        assert b.text == one.text and b.title == one.title
        assert order_from_row(b) == two  # a re-dispatch routes the order it stored, extras too
        assert b.received_at == T0 and b.next_due == datetime(2025, 3, 4, 9)

        def events(oid: str) -> list[tuple[Any, ...]]:
            return [(e.kind, e.at, e.actor, e.data, e.accepted, e.rejection_code)
                    for e in store.history(oid)]

        assert events("GD1") == events("GD2")
        skip = {"id", "order_id", "at"}
        [d1], [d2] = store.decisions("GD1"), store.decisions("GD2")
        assert {k: v for k, v in d1.model_dump().items() if k not in skip} == {
            k: v for k, v in d2.model_dump().items() if k not in skip
        }
        assert d2.candidates == [{"unit": BUREAU, "probability": 0.6},
                                 {"unit": TOWN, "probability": 0.3}]

    def test_a_rejected_event_with_unstorable_text_is_recorded_escaped(self, store: Store) -> None:
        """An event kind with NUL (which PostgreSQL text cannot hold) is rejected and recorded
        with the NUL escaped, in the reason too: nothing about it is lost or fails the store."""
        store.add_order(order())
        bad = ev("坏\x00类型")
        result = store.apply(bad)
        assert result.rejected is not None and "坏\\x00类型" in result.rejected.reason
        [row] = [r for r in store.history("GD1") if r.event_id == bad.event_id]
        assert not row.accepted and row.kind == "坏\\x00类型"
        assert row.rejection_reason == result.rejected.reason

    def test_dispatch_batch_routes_stored_and_new_orders_together(self, store: Store) -> None:
        """A batch mixing an order stored but never routed (a worker died between the two)
        with a new one is one transaction: both routed, the stored one received once."""
        store.add_order(order("GD1"))
        assert store.admit([order("GD1"), order("GD2")]) == ["unrouted", "new"]
        items = [(order(oid), is_new, decision(oid),
                  ev("OrderDispatched", order_id=oid, unit=TOWN))
                 for oid, is_new in (("GD1", False), ("GD2", True))]
        results = store.dispatch_batch(items)
        assert results is not None
        assert [[e.kind for e in r.applied] for r in results] == [
            ["OrderDispatched"], ["OrderReceived", "OrderDispatched"]]
        for oid in ("GD1", "GD2"):
            assert [e.kind for e in store.history(oid)] == ["OrderReceived", "OrderDispatched"]
            assert store.get_order(oid).state == State.DISPATCHED.value  # type: ignore[union-attr]
            assert len(store.decisions(oid)) == 1

    def test_dispatch_batch_writes_nothing_when_a_stored_order_is_gone(
        self, store: Store
    ) -> None:
        """An order admitted as stored that is not there when the batch is written: the batch
        returns None and writes nothing, its new orders included."""
        items = [(order(oid), is_new, decision(oid),
                  ev("OrderDispatched", order_id=oid, unit=TOWN))
                 for oid, is_new in (("GD2", True), ("GD1", False))]
        assert store.dispatch_batch(items) is None
        assert store.get_order("GD1") is None and store.get_order("GD2") is None
        assert store.history("GD2") == [] and store.decisions("GD2") == []

    def test_dispatch_batch_writes_nothing_when_another_writer_stored_the_order(
        self, store: Store
    ) -> None:
        """Admitted as new, then stored by another worker before the batch is written: the batch
        returns None (the router falls back to the one-by-one path) and writes nothing."""
        assert store.admit([order()]) == ["new"]
        store.add_order(order())  # the other worker
        route = ev("OrderDispatched", unit=TOWN)
        assert store.dispatch_batch([(order(), True, decision(), route)]) is None
        assert [e.kind for e in store.history("GD1")] == ["OrderReceived"]
        assert store.decisions("GD1") == []
        assert store.get_order("GD1").state == State.RECEIVED.value  # type: ignore[union-attr]


class TestStoreSQLite(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = Store.from_url(f"sqlite:///{tmp_path / 'nested' / 'hotline.db'}")
        yield s
        s.close()
