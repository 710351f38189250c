"""The pipeline on a real Kafka broker and a real database, workers as `hotline worker`
subprocesses (issue 3, item 7):

(a) 1,000 orders in: each dispatched exactly once, in the database and on the right unit's feed;
(b) 退单 and dissatisfied revisits through Kafka lead to 改派 and 重办 (SQLite and PostgreSQL);
(c) malformed messages land in `workorders.dlq` with the reason while the others flow;
(d) kill -9 a worker mid-stream and start another: no order lost, none applied twice;
(e) two workers, one stops: the other takes its partitions and finishes.

Each test has its own topic prefix (so its own consumer group) and its own PostgreSQL schema or
SQLite file; every wait is bounded; every worker is killed by the fixtures.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hotline.bootstrap import load_rules
from hotline.settings import Settings
from routing_rules.config import RoutingConfig
from streams.app import MAX_SEEN_PER_ENTERPRISE
from streams.intake import normalize
from streams.kafka_io import send_events
from streams.partitioning import enterprise_key, has_enterprise
from tests.integration.conftest import make_topic_prefix
from tests.integration.pipeline_helpers import (
    PARTITIONS,
    START_DAY,
    Db,
    PacedIngest,
    Pipeline,
    create_schema,
    drop_schema,
    event,
    feeds_by_order,
    make_orders,
    read_topic,
    running_pipeline,
    send_raw,
    wait_until,
    write_jsonl,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 1000
FIRST = 300  # test (e): orders sent before worker 1 stops; the rest while it stops
START_TIMEOUT = 60  # a worker loads the model, joins the group, recovers its table
FLOW_TIMEOUT = 150  # 1,000 orders through one worker on this 2-core machine
FEEDS_SETTLE_S = 30  # the last feed messages follow the database write within seconds


@pytest.fixture(scope="module")
def rules() -> RoutingConfig:
    return load_rules(Settings())


@pytest.fixture(scope="module")
def pg_db_url(pg_url: str) -> Iterator[str]:
    """A PostgreSQL schema for this module's shared pipeline, dropped afterwards."""
    schema = create_schema(pg_url, "pipeline")
    try:
        yield schema.url
    finally:
        drop_schema(schema)


@pytest.fixture(scope="module")
def pg_pipeline(
    kafka_bootstrap: str, pg_db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """One worker on PostgreSQL, shared by (a), (b) and (c); each uses its own order ids."""
    logs = tmp_path_factory.mktemp("pg-pipeline")
    with running_pipeline(kafka_bootstrap, pg_db_url, make_topic_prefix("pg"), logs) as p:
        p.start_worker("pg-1")
        yield p


@pytest.fixture(scope="module")
def sqlite_pipeline(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """One worker on a SQLite file (one process: SQLite takes a single writer)."""
    logs = tmp_path_factory.mktemp("sqlite-pipeline")
    url = f"sqlite:///{logs / 'hotline.db'}"
    with running_pipeline(kafka_bootstrap, url, make_topic_prefix("sqlite"), logs) as p:
        p.start_worker("sqlite-1")
        yield p


@pytest.fixture
def own_pipeline(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    """A pipeline of its own (own schema, prefix, group) for the tests that stop workers."""
    schema = create_schema(pg_url, request.node.name[:20].replace("-", "_").lower())
    try:
        with running_pipeline(
            kafka_bootstrap, schema.url, make_topic_prefix(request.node.name), tmp_path
        ) as p:
            yield p
    finally:
        drop_schema(schema)


def db_for(p: Pipeline) -> Db:
    return Db(p.database_url)


def wait_routed(p: Pipeline, db: Db, prefix: str, n: int, timeout: float = FLOW_TIMEOUT) -> None:
    def done() -> bool:
        for w in p.workers:
            if not w.alive() and w.proc.returncode not in (-9, 0):
                raise AssertionError(f"{w.worker_id} exited {w.proc.returncode}:\n{w.tail()}")
        return db.routed(prefix) >= n

    try:
        wait_until(done, timeout=timeout, what=f"{n} orders routed ({prefix})")
    except AssertionError:
        for w in p.workers:
            w.dump_stacks()
        time.sleep(2)
        logs = "\n".join(f"--- {w.worker_id}\n{w.tail()}" for w in p.workers)
        raise AssertionError(f"only {db.routed(prefix)} of {n} routed\n{logs}") from None


def assert_each_routed_once(db: Db, prefix: str, n: int) -> dict[str, tuple[str, ...]]:
    """Every order received once and routed (dispatched or manual) exactly once."""
    orders = db.orders(prefix)
    assert len(orders) == n
    events = db.accepted_events(prefix)
    for oid in orders:
        assert events[(oid, "OrderReceived")] == 1, oid
        routed = events[(oid, "OrderDispatched")] + events[(oid, "SentToManualQueue")]
        assert routed == 1, f"{oid} routed {routed} times"
    assert db.event_ids_unique(prefix)
    return {oid: (row[1], row[2]) for oid, row in orders.items()}


def assert_feeds_match(
    p: Pipeline, db: Db, rules: RoutingConfig, prefix: str, *, exactly_once: bool,
    settle_s: float = FEEDS_SETTLE_S,
) -> None:
    """Each dispatched order is on its lead unit's feed (主办) and each co-unit's (协办), and on
    `workorders.dispatched`; a redelivery may repeat the same dispatch, never change it.

    A worker writes the database before it sends the feeds, so the last orders' messages may
    still be on their way when the database shows every order routed: the feeds are read
    again until they match or `settle_s` has passed (a message that never comes fails)."""
    deadline = time.monotonic() + settle_s
    while True:
        problem = feeds_mismatch(p, db, rules, prefix, exactly_once=exactly_once)
        if problem is None:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(problem)
        time.sleep(2.0)


def feeds_mismatch(
    p: Pipeline, db: Db, rules: RoutingConfig, prefix: str, *, exactly_once: bool
) -> str | None:
    """The first order whose feed messages differ from its stored dispatch, described."""
    orders = db.orders(prefix)
    feeds = feeds_by_order(p.bootstrap, p.prefix)
    dispatched = Counter(
        k for k, _ in read_topic(p.bootstrap, p.topic("workorders.dispatched")) if k
        and k.startswith(prefix)
    )
    for oid, row in orders.items():
        state, lead, co_units = row[1], row[2], list(row[3] or [])
        if state != "已派单":
            if oid in feeds:
                return f"{oid} ({state}) is on a feed: {feeds[oid]}"
            continue
        got = Counter((topic, m["role"], m["decision"]["lead_unit"]) for topic, m in feeds[oid])
        want = Counter({(f"dispatch.{rules.code_of(lead)}", "主办", lead): 1})
        for u in co_units:
            want[(f"dispatch.{rules.code_of(u)}", "协办", lead)] = 1
        same = got == want if exactly_once else set(got) == set(want)
        if not same:
            return f"{oid}: feeds {dict(got)} != stored dispatch {dict(want)}"
        if dispatched[oid] < 1 or (exactly_once and dispatched[oid] != 1):
            return f"{oid}: {dispatched[oid]} messages on workorders.dispatched"
    return None


# ---- (a) ----------------------------------------------------------------------------------------
def test_a_thousand_orders_each_dispatched_exactly_once(
    pg_pipeline: Pipeline, rules: RoutingConfig, tmp_path: Path
) -> None:
    prefix = "JSA"
    path = write_jsonl(tmp_path / "orders.jsonl", make_orders(ORDERS, prefix=prefix))
    out = pg_pipeline.cli("ingest", str(path), timeout=120)
    assert f"{ORDERS} 条（共 {ORDERS} 条）" in out
    db = db_for(pg_pipeline)
    try:
        wait_routed(pg_pipeline, db, prefix, ORDERS)
        states = assert_each_routed_once(db, prefix, ORDERS)
        assert Counter(s for s, _ in states.values())["已派单"] > ORDERS // 2
        assert_feeds_match(pg_pipeline, db, rules, prefix, exactly_once=True)
        # the workers ran on the default event loop, uvloop (HOTLINE_EVENT_LOOP)
        assert {(w.health() or {}).get("event_loop") for w in pg_pipeline.workers} == {"uvloop"}
    finally:
        db.close()


def test_orders_from_any_producer_meet_in_their_enterprises_table_entry(
    own_pipeline: Pipeline, rules: RoutingConfig, tmp_path: Path
) -> None:
    """`hotline ingest` puts each order on its enterprise's home partition, where the worker
    routes it; a producer that partitions by order id does not, and the worker forwards those
    orders through `workorders.by-enterprise`. Either way every order is routed once, on its
    feeds, and counted in its enterprise's one repeat-table entry."""
    p = own_pipeline
    prefix = "JSM"
    n = 240
    orders = make_orders(n, prefix=prefix)
    firms = list({o["credit_code"]: o["enterprise_name"] for o in orders
                  if o.get("credit_code") and o.get("enterprise_name")}.items())[:12]
    for i, o in enumerate(orders):  # 12 enterprises of 20 orders each, 10 sent by each producer
        o["credit_code"], o["enterprise_name"] = firms[i % len(firms)]
    ours, foreign = orders[0::2], orders[1::2]
    p.start_worker("m-1")
    p.cli("ingest", str(write_jsonl(tmp_path / "ours.jsonl", ours)), timeout=120)
    send_raw(p.bootstrap, p.topic("workorders.received"), [
        (o["order_id"].encode(), json.dumps(o, ensure_ascii=False).encode()) for o in foreign
    ])
    db = db_for(p)
    try:
        wait_routed(p, db, prefix, n)
        assert_each_routed_once(db, prefix, n)
        assert_feeds_match(p, db, rules, prefix, exactly_once=True)
    finally:
        db.close()
    forwarded = {v["order_id"] for _, v in read_topic(p.bootstrap, p.topic("workorders.by-enterprise"))}
    foreign_ids = {o["order_id"] for o in foreign}
    assert forwarded <= foreign_ids, "an order sent by `hotline ingest` took the repartition hop"
    assert len(forwarded) >= len(foreign) // 4, "the foreign producer's orders were not forwarded"
    # each enterprise's last table entry holds its newest orders of both producers
    by_key: dict[str, dict[str, str]] = {}
    for o in orders:
        order = normalize(o, max_text_chars=Settings().max_text_chars)
        key = enterprise_key(order)
        if has_enterprise(key):
            by_key.setdefault(key, {})[order.order_id] = order.received_at.isoformat()
    changelog = read_topic(p.bootstrap, p.topic("hotline-router-enterprise-repeats-changelog"))
    last = {json.loads(k): entry for k, entry in changelog if k}  # keys are JSON strings
    assert len(by_key) == 12 and all(len(seen) < MAX_SEEN_PER_ENTERPRISE for seen in by_key.values())
    for key, seen in by_key.items():
        assert last[key] == seen, key


def test_a_unit_reads_its_own_feed_with_hotline_feed(
    pg_pipeline: Pipeline, rules: RoutingConfig, tmp_path: Path
) -> None:
    prefix = "JSF"
    path = write_jsonl(tmp_path / "orders.jsonl", make_orders(40, prefix=prefix))
    pg_pipeline.cli("ingest", str(path))
    db = db_for(pg_pipeline)
    try:
        wait_routed(pg_pipeline, db, prefix, 40)
        leads = Counter(row[2] for row in db.orders(prefix).values() if row[1] == "已派单")
        unit, n = leads.most_common(1)[0]
        out = pg_pipeline.cli("feed", "--unit", unit, "--json", "--idle-timeout", "4")
        mine = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        ids = {m["order_id"] for m in mine if m["order_id"].startswith(prefix) and m["role"] == "主办"}
        assert len(ids) == n
        assert all(m["decision"]["lead_unit"] == unit for m in mine if m["role"] == "主办")
        # committed: the same group reads nothing new the second time
        again = pg_pipeline.cli("feed", "--unit", unit, "--json", "--idle-timeout", "3")
        assert not [line for line in again.splitlines() if line.startswith("{")]
    finally:
        db.close()


# ---- (b) ----------------------------------------------------------------------------------------
def lifecycle_through_kafka(p: Pipeline, rules: RoutingConfig, tmp_path: Path, prefix: str) -> None:
    """退单 → 改派 to another unit, on its feed; 不满意 revisit → 重办 to the same unit."""
    path = write_jsonl(tmp_path / "orders.jsonl", make_orders(30, prefix=prefix))
    p.cli("ingest", str(path))
    db = db_for(p)
    try:
        wait_routed(p, db, prefix, 30)
        dispatched = sorted(
            (oid, row[2]) for oid, row in db.orders(prefix).items() if row[1] == "已派单"
        )
        assert len(dispatched) >= 4
        (ret_id, ret_unit), (rev_id, rev_unit) = dispatched[0], dispatched[1]
        t = START_DAY + timedelta(days=1)
        # 退单 through the CLI, as a unit would
        p.cli("event", "退单", "--order", ret_id, "--actor", ret_unit, "--reason", "不属于本单位职责")
        # a full round with a dissatisfied revisit, sent in order on the order's key
        settings = Settings(kafka_bootstrap=p.bootstrap, topic_prefix=p.prefix,
                            database_url=p.database_url)
        send_events(settings, [
            event(rev_id, "OrderAccepted", t, rev_unit),
            event(rev_id, "OrderReplied", t + timedelta(hours=2), rev_unit, reply="已现场处理"),
            event(rev_id, "RevisitRecorded", t + timedelta(hours=4), "revisit:回访员",
                  contacted="已联系", solved="未解决", satisfaction="不满意"),
        ])

        def settled() -> bool:
            rows = db.orders(prefix)
            return rows[ret_id][4] == 1 and rows[rev_id][5] == 1 and rows[ret_id][1] != "已退单"

        wait_until(settled, timeout=60, what="改派 and 重办 applied")
        rows = db.orders(prefix)
        events = db.accepted_events(prefix)
        # 改派: routed again, never back to the unit that returned it
        assert events[(ret_id, "OrderReturned")] == 1
        assert events[(ret_id, "OrderDispatched")] + events[(ret_id, "SentToManualQueue")] == 2
        if rows[ret_id][1] == "已派单":
            new_unit = rows[ret_id][2]
            assert new_unit != ret_unit
            feed = wait_until(
                lambda: [m for t_, m in feeds_by_order(p.bootstrap, p.prefix).get(ret_id, [])
                         if t_ == f"dispatch.{rules.code_of(new_unit)}" and m["role"] == "主办"],
                timeout=20, what="改派 on the new unit's feed",
            )
            assert feed[0]["decision"]["lead_unit"] == new_unit
        else:
            assert rows[ret_id][1] == "待人工派单"
        # 重办: back to the same unit, count raised
        assert events[(rev_id, "RevisitRecorded")] == 1
        assert events[(rev_id, "OrderReopened")] == 1
        assert rows[rev_id][2] == rev_unit and rows[rev_id][1] in ("已派单", "办理中")
        assert db.event_ids_unique(prefix)
    finally:
        db.close()


def test_b_return_and_dissatisfied_revisit_on_postgresql(
    pg_pipeline: Pipeline, rules: RoutingConfig, tmp_path: Path
) -> None:
    lifecycle_through_kafka(pg_pipeline, rules, tmp_path, "JSB")


def test_b_return_and_dissatisfied_revisit_on_sqlite(
    sqlite_pipeline: Pipeline, rules: RoutingConfig, tmp_path: Path
) -> None:
    lifecycle_through_kafka(sqlite_pipeline, rules, tmp_path, "JSB")


# ---- (c) ----------------------------------------------------------------------------------------
BAD_INTAKE: list[tuple[bytes, str]] = [
    (b'{"order_id": "JSC-BAD-1", "received_at": "2026-11-24T09:00:00", "text": "   "}',
     "EMPTY_TEXT"),
    (b'{"order_id": "JSC-BAD-2", "received_at": "2026-11-24T09:00:00", "text": 12345}',
     "WRONG_TYPE"),
    (b'{"order_id": "JSC-BAD-3", "text": "\xb2\xbb\xca\xc7UTF-8"}', ""),
    (b'{"order_id": "JSC-BAD-4", "text": "truncated', ""),
    (b'[1, 2, 3]', ""),
]


def test_c_malformed_messages_go_to_the_dlq_with_the_reason(
    pg_pipeline: Pipeline, tmp_path: Path
) -> None:
    prefix = "JSC"
    good = make_orders(20, prefix=prefix)
    mixed: list[object] = []
    for i, g in enumerate(good):
        mixed.append(g)
        if i < len(BAD_INTAKE):
            mixed.append(BAD_INTAKE[i][0])
    pg_pipeline.cli("ingest", str(write_jsonl(tmp_path / "mixed.jsonl", mixed)))
    bad_event = b'{"event_id": "x", "kind": "OrderAccepted"}'
    send_raw(pg_pipeline.bootstrap, pg_pipeline.topic("workorders.events"),
             [(b"JSC00000", bad_event), (b"JSC00001", b"\xff not json")])
    db = db_for(pg_pipeline)
    try:
        wait_routed(pg_pipeline, db, prefix, len(good))
        assert_each_routed_once(db, prefix, len(good))

        def dlq_complete() -> list[dict[str, object]]:
            msgs = [v for _, v in read_topic(pg_pipeline.bootstrap,
                                             pg_pipeline.topic("workorders.dlq"))]
            return msgs if len(msgs) >= len(BAD_INTAKE) + 2 else []

        dlq = wait_until(dlq_complete, timeout=30, what="dead letters on workorders.dlq")
        assert len(dlq) == len(BAD_INTAKE) + 2
        assert all(m["code"] and m["reason"] and m["payload"] for m in dlq)
        by_source = Counter(str(m["source"]) for m in dlq)
        assert by_source == {"workorders.received": len(BAD_INTAKE), "workorders.events": 2}
        codes = {str(m["code"]) for m in dlq}
        assert {"EMPTY_TEXT", "WRONG_TYPE", "BAD_EVENT"} <= codes
        for raw, code in BAD_INTAKE:
            text = raw.decode("utf-8", errors="replace")
            match = [m for m in dlq if m["payload"] == text]
            assert match, text
            assert not code or match[0]["code"] == code
        stored = db.dead_letters()
        assert len(stored) == len(BAD_INTAKE) + 2
    finally:
        db.close()


# ---- (d) ----------------------------------------------------------------------------------------
def test_d_kill_minus_9_mid_stream_loses_nothing_and_applies_nothing_twice(
    own_pipeline: Pipeline, rules: RoutingConfig
) -> None:
    p = own_pipeline
    prefix = "JSD"
    received = p.topic("workorders.received")
    first = p.start_worker("d-1")
    wait_until(lambda: len(first.assigned(received)) == PARTITIONS, timeout=START_TIMEOUT,
               what="the first worker holding every partition")
    # the orders arrive at a fraction of a worker's speed and the rest only after the kill:
    # the worker dies with orders in flight, and cannot have finished them all
    before_kill = 600
    stream = PacedIngest(p, make_orders(ORDERS, prefix=prefix), rate=250,
                         hold_after=before_kill).start()
    db = db_for(p)
    try:
        wait_until(lambda: db.routed(prefix) >= 200, timeout=START_TIMEOUT, interval=0.05,
                   what="the first worker under way")
        first.kill()
        at_kill = db.routed(prefix)
        assert at_kill <= before_kill < ORDERS, at_kill
        assert stream.wait() == ORDERS
        p.start_worker("d-2")
        wait_routed(p, db, prefix, ORDERS)
        assert_each_routed_once(db, prefix, ORDERS)
        assert_feeds_match(p, db, rules, prefix, exactly_once=False)
    finally:
        stream.release()
        db.close()


# ---- (e) ----------------------------------------------------------------------------------------
def test_e_two_workers_share_partitions_and_one_takes_over(
    own_pipeline: Pipeline, rules: RoutingConfig, tmp_path: Path
) -> None:
    p = own_pipeline
    prefix = "JSE"
    w1, w2 = p.start_worker("e-1"), p.start_worker("e-2")
    received = p.topic("workorders.received")

    def sharing() -> bool:
        for w in (w1, w2):
            assert w.alive(), f"{w.worker_id} exited {w.proc.returncode}:\n{w.tail()}"
        mine, theirs = w1.assigned(received), w2.assigned(received)
        return bool(mine and theirs and len(mine | theirs) == 4)

    wait_until(sharing, timeout=START_TIMEOUT + 30, what="both workers holding partitions")
    assert not w1.assigned(received) & w2.assigned(received)
    orders = make_orders(ORDERS, prefix=prefix)
    p.cli("ingest", str(write_jsonl(tmp_path / "first.jsonl", orders[:FIRST])), timeout=120)
    db = db_for(p)
    try:
        wait_until(lambda: db.routed(prefix) >= 100, timeout=60, what="both workers under way")
        # the rest arrives while worker 1 stops: what lands on its partitions is left to worker 2
        rest = p.cli_in_background("ingest", str(write_jsonl(tmp_path / "rest.jsonl",
                                                             orders[FIRST:])))
        assert w1.terminate() == 0
        assert rest.wait(timeout=120) == 0, "hotline ingest failed"
        wait_until(lambda: len(w2.assigned(received)) == 4, timeout=30,
                   what="the remaining worker taking every partition")
        wait_routed(p, db, prefix, ORDERS)
        assert_each_routed_once(db, prefix, ORDERS)
        assert_feeds_match(p, db, rules, prefix, exactly_once=False)
        # hotline ingest put each order on its enterprise's home partition, so whichever
        # worker held it, the group's leader or not, routed it there: none took the hop
        assert sum(1 for o in orders if o.get("credit_code") or o.get("enterprise_name")) > 100
        assert read_topic(p.bootstrap, p.topic("workorders.by-enterprise")) == []
    finally:
        db.close()
