"""Faults on the real servers (issue 6, item 1), each bounded in time:

- a poison message that makes the handler raise: dead-lettered with the error after bounded
  retries, the partition keeps flowing;
- a worker killed (kill -9) during a rebalance;
- the worker taking over loses its table's changelog records on the way to the recovery (an
  injected fault): the recovery watch reads them again;
- PostgreSQL stopped for 30 s mid-stream: workers back off, commit nothing unwritten, recover;
- the broker restarted mid-stream.

The last two stop a server, so they run on a private PostgreSQL cluster / Kafka broker of their
own (other ports, a temporary home), never on the shared ones. After each fault every order is
accounted for exactly once (routed or dead-lettered), no event is applied twice, and the stored
lifecycle is consistent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.app import MAX_SEEN_PER_ENTERPRISE
from tests.integration.conftest import make_topic_prefix, probe_database
from tests.integration.pipeline_helpers import (
    PROJECT_ROOT,
    Db,
    PacedIngest,
    Pipeline,
    create_schema,
    drop_schema,
    free_port,
    make_orders,
    read_topic,
    running_pipeline,
    send_raw,
    wait_until,
    write_jsonl,
)
from tests.integration.test_kafka_pipeline import (
    assert_each_routed_once,
    wait_routed,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKLOG = 3000  # the backlog of the broker restart and of the PostgreSQL outage ...
FIRST = 200  # ... of which this much arrives first, the rest paced around the fault:
REST_RATE = 400  # orders/s, a fraction of a worker's speed (1,500-1,800/s on this machine)
REST_BEFORE_FAULT = 400  # then held until the fault is in place
OUTAGE_S = 30
KAFKA_SH = PROJECT_ROOT / "ops" / "kafka" / "kafka.sh"
PG_SH = PROJECT_ROOT / "ops" / "postgres" / "pg.sh"
SHARED_KAFKA_LIBS = PROJECT_ROOT / "var" / "kafka" / "libs"


def run_script(script: Path, command: str, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(
        ["bash", str(script), command], env={**os.environ, **env}, capture_output=True,
        timeout=timeout, check=False,
    )
    out = done.stdout.decode() + done.stderr.decode()
    assert done.returncode == 0, f"{script.name} {command} failed:\n{out[-3000:]}"
    return out


@pytest.fixture
def own_pg_pipeline(
    kafka_bootstrap: str, pg_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
    schema = create_schema(pg_url, "fault")
    try:
        with running_pipeline(kafka_bootstrap, schema.url, make_topic_prefix(request.node.name),
                              tmp_path / "logs") as p:
            yield p
    finally:
        drop_schema(schema)


@pytest.fixture
def private_pg(kafka_bootstrap: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PostgreSQL cluster of this test's own, on its own port; stopped and removed after."""
    if shutil.which("pg_ctl") is None and not Path("/usr/lib/postgresql").is_dir():
        pytest.skip("PostgreSQL binaries are not installed")
    home = Path("/tmp") / f"hotline-pg-fault-{os.getpid()}-{free_port()}"
    env = {"PG_HOME_DIR": str(home), "PG_PORT": str(free_port())}
    try:
        run_script(PG_SH, "start", env)
        yield env
    finally:
        subprocess.run(["bash", str(PG_SH), "stop"], env={**os.environ, **env},
                       capture_output=True, timeout=90, check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A single-node broker of this test's own (jars shared with the main one)."""
    if not SHARED_KAFKA_LIBS.is_dir():
        pytest.skip("Kafka jars not fetched; run: bash ops/kafka/kafka.sh fetch")
    home = tmp_path / "kafka"
    home.mkdir()
    (home / "libs").symlink_to(SHARED_KAFKA_LIBS)
    env = {
        "KAFKA_HOME_DIR": str(home), "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()), "KAFKA_STOP_SECONDS": "20",
    }
    try:
        run_script(KAFKA_SH, "start", env)
        run_script(KAFKA_SH, "wait", env)
        yield env
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env={**os.environ, **env},
                       capture_output=True, timeout=60, check=False)


def ingest(p: Pipeline, tmp_path: Path, prefix: str, n: int) -> None:
    path = write_jsonl(tmp_path / f"{prefix}.jsonl", make_orders(n, prefix=prefix))
    p.cli("ingest", str(path), timeout=120)


def paced_rest(p: Pipeline, prefix: str) -> PacedIngest:
    """Orders FIRST..BACKLOG of `prefix` (`ingest(..., FIRST)` sent the first ones), arriving at
    REST_RATE a second while the fault is prepared; after REST_BEFORE_FAULT of them the rest
    waits for `release()`, so the worker cannot finish before the fault however fast it is."""
    rest = make_orders(BACKLOG, prefix=prefix)[FIRST:]
    return PacedIngest(p, rest, rate=REST_RATE, hold_after=REST_BEFORE_FAULT).start()


def check_consistent(db: Db, prefix: str, n: int) -> None:
    """Every order once, routed once; no event id twice; the stored state matches the log."""
    assert_each_routed_once(db, prefix, n)
    rows = db.rows(
        "SELECT w.id FROM work_order w WHERE w.id LIKE :p AND w.version <> "
        "(SELECT count(*) FROM event_log e WHERE e.order_id = w.id AND e.accepted)",
        p=prefix + "%",
    )
    assert not rows, f"version differs from the accepted events for {rows[:5]}"


# ---- poison message -----------------------------------------------------------------------------
def test_poison_message_is_dead_lettered_and_the_partition_keeps_flowing(
    own_pg_pipeline: Pipeline, tmp_path: Path
) -> None:
    p = own_pg_pipeline
    p.start_worker("poison-1")
    # one partition only, so the orders behind the poison wait on it
    poison = json.dumps({"order_id": "JSP-POISON", "channel": "12345热线",
                         "received_at": "not a time", "text": "x"}).encode()
    by_enterprise = p.topic("workorders.by-enterprise")
    wait_until(lambda: p.workers[0].assigned(by_enterprise), timeout=90,
               what="the worker holding the repartition topic")
    send_raw(p.bootstrap, by_enterprise, [(b"order:JSP-POISON", poison)])
    ingest(p, tmp_path, "JSP", 50)
    db = Db(p.database_url)
    try:
        wait_routed(p, db, "JSP0", 50, timeout=90)
        check_consistent(db, "JSP0", 50)
        dlq = wait_until(
            lambda: [v for _, v in read_topic(p.bootstrap, p.topic("workorders.dlq"))
                     if v["code"] == "HANDLER_ERROR"],
            timeout=30, what="the poison message on workorders.dlq",
        )
        assert len(dlq) == 1
        assert "ValueError" in dlq[0]["reason"] and "not a time" in dlq[0]["payload"]
        assert dlq[0]["source"] == "workorders.by-enterprise"
        assert [r for r in db.dead_letters() if r[1].startswith("HANDLER_ERROR")]
        assert "JSP-POISON" not in db.orders("JSP-")
    finally:
        db.close()


# ---- a worker killed during a rebalance ---------------------------------------------------------
def test_worker_killed_during_a_rebalance(own_pg_pipeline: Pipeline, tmp_path: Path) -> None:
    p = own_pg_pipeline
    prefix = "JSR"
    n, first = 3000, 1000
    orders = make_orders(n, prefix=prefix)
    p.cli("ingest", str(write_jsonl(tmp_path / "first.jsonl", orders[:first])), timeout=120)
    w1 = p.start_worker("r-1")
    received = p.topic("workorders.received")
    db = Db(p.database_url)
    try:
        wait_until(lambda: db.routed(prefix) >= 20, timeout=90, what="worker 1 under way")
        w2 = p.start_worker("r-2", loglevel="info")  # joining triggers a rebalance ...
        wait_until(lambda: "joining group" in w2.log.read_text(errors="replace"), timeout=60,
                   what="worker 2 joining the group")
        # the rest of the backlog arrives now, so worker 1 is mid-stream whatever its speed
        rest = p.cli_in_background("ingest", str(write_jsonl(tmp_path / "rest.jsonl",
                                                             orders[first:])))
        w1.kill()  # ... and worker 1 dies in the middle of it
        assert rest.wait(timeout=120) == 0, "hotline ingest failed"
        assert db.routed(prefix) < n, "finished before the fault"
        wait_routed(p, db, prefix, n, timeout=180)
        check_consistent(db, prefix, n)
        assert len(w2.assigned(received)) == 4
    finally:
        db.close()


# ---- a table recovery that lost its changelog records -----------------------------------------
LOSSY_WORKER = (sys.executable, str(Path(__file__).with_name("lossy_recovery_worker.py")))


def test_table_recovery_that_lost_changelog_records_is_healed(
    own_pg_pipeline: Pipeline, tmp_path: Path
) -> None:
    """The stuck-recovery mode of the takeover tests, made to happen: the worker that takes over
    loses the first delivery of every changelog record, so its table recovery waits on records
    the consumer has already fetched. The recovery watch must send the consumer back; then every
    order is routed once and the repeat table holds every enterprise's orders from both workers."""
    p = own_pg_pipeline
    prefix = "JST"
    n, first = 600, 300
    orders = make_orders(n, prefix=prefix)
    w1 = p.start_worker("t-1")
    p.cli("ingest", str(write_jsonl(tmp_path / "first.jsonl", orders[:first])), timeout=120)
    db = Db(p.database_url)
    try:
        wait_routed(p, db, prefix, first, timeout=120)
        assert w1.terminate() == 0
        w2 = p.start_worker("t-2", loglevel="info", program=LOSSY_WORKER)
        p.cli("ingest", str(write_jsonl(tmp_path / "rest.jsonl", orders[first:])), timeout=120)
        wait_routed(p, db, prefix, n, timeout=150)
        check_consistent(db, prefix, n)
        log = w2.log.read_text(errors="replace")
        assert "fault injected: dropping the first delivery" in log, "the fault never struck"
        assert "表恢复在等待已拉取过的变更日志消息" in log
        assert_repeat_table_complete(p, prefix, first)
    finally:
        db.close()


def assert_repeat_table_complete(p: Pipeline, prefix: str, first: int) -> None:
    """Each enterprise's last changelog entry holds its newest orders of both workers: a
    recovery that skipped records would have started the second worker's entries afresh
    (orders before `first` came through the first worker)."""
    changelog = read_topic(p.bootstrap, p.topic("hotline-router-enterprise-repeats-changelog"))
    written: dict[str, dict[str, str]] = {}  # key -> every order id ever in its entry
    last: dict[str, dict[str, str]] = {}
    for key, entry in changelog:
        assert key is not None
        written.setdefault(key, {}).update(entry)
        last[key] = entry
    spanning = 0
    for key, entry in last.items():
        ours = {k: v for k, v in written[key].items() if k.startswith(prefix)}
        newest = dict(sorted(ours.items(), key=lambda kv: kv[1])[-MAX_SEEN_PER_ENTERPRISE:])
        assert {k: v for k, v in entry.items() if k.startswith(prefix)} == newest, key
        ids = sorted(int(k[len(prefix):]) for k in newest)
        spanning += ids[0] < first <= ids[-1]
    assert spanning, "no enterprise has orders on both sides of the takeover"


# ---- PostgreSQL away for 30 s -------------------------------------------------------------------
def test_postgresql_stopped_for_30_seconds_mid_stream(
    kafka_bootstrap: str, private_pg: dict[str, str], tmp_path: Path
) -> None:
    url = run_script(PG_SH, "url", private_pg).strip()
    prefix = "JSQ"
    with running_pipeline(kafka_bootstrap, url, make_topic_prefix("pg-outage"),
                          tmp_path / "logs") as p:
        w = p.start_worker("q-1")
        ingest(p, tmp_path, prefix, FIRST)
        db = Db(url)
        try:
            wait_until(lambda: db.routed(prefix) >= 50, timeout=90, what="the worker under way")
            rest = paced_rest(p, prefix)
            wait_until(lambda: db.routed(prefix) >= FIRST + 50, timeout=60, interval=0.05,
                       what="the paced orders under way")
            run_script(PG_SH, "stop", private_pg)
            stopped = time.monotonic()
            rest.release()  # the rest arrives while the database is away
            while time.monotonic() - stopped < OUTAGE_S:
                assert w.alive(), f"the worker died while the database was away:\n{w.tail()}"
                time.sleep(1)
            assert rest.wait() == BACKLOG - FIRST
            run_script(PG_SH, "start", private_pg)
            assert probe_database(url) is None
            wait_routed(p, db, prefix, BACKLOG, timeout=240)
            check_consistent(db, prefix, BACKLOG)
            assert w.alive()
            assert "transient failure" in w.log.read_text(errors="replace")
        finally:
            db.close()


# ---- the broker restarted -----------------------------------------------------------------------
def test_broker_restarted_mid_stream(
    private_kafka: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{private_kafka['KAFKA_PORT']}"
    schema = create_schema(pg_url, "broker")
    prefix = "JSK"
    try:
        with running_pipeline(bootstrap, schema.url, make_topic_prefix("broker-restart"),
                              tmp_path / "logs") as p:
            w = p.start_worker("k-1")
            ingest(p, tmp_path, prefix, FIRST)
            db = Db(schema.url)
            try:
                wait_until(lambda: db.routed(prefix) >= 50, timeout=90, what="the worker under way")
                rest = paced_rest(p, prefix)
                # the broker stops once the paced orders before the fault are handed to the
                # producer (its sends would fail while the broker is away), while the worker
                # still routes and commits them
                wait_until(lambda: rest.produced >= REST_BEFORE_FAULT, timeout=60, interval=0.05,
                           what="the paced orders before the fault sent")
                time.sleep(0.1)  # the producer's linger
                run_script(KAFKA_SH, "stop", private_kafka)
                assert db.routed(prefix) <= FIRST + REST_BEFORE_FAULT < BACKLOG
                time.sleep(5)
                run_script(KAFKA_SH, "start", private_kafka)
                run_script(KAFKA_SH, "wait", private_kafka)
                rest.release()  # the rest arrives once the broker is back
                assert rest.wait() == BACKLOG - FIRST
                wait_routed(p, db, prefix, BACKLOG, timeout=240)
                check_consistent(db, prefix, BACKLOG)
                assert w.alive(), w.tail()
            finally:
                db.close()
    finally:
        drop_schema(schema)
