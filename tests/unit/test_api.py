"""The HTTP API: authorization on every route, the lifecycle through it, masking, idempotency,
Kafka mode (202) and the token command. A small batch of the sample day is routed once by the
bundled model; every test gets its own copy of that database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlmodel import Session, select

from api.app import PUBLIC_PATHS, create_api, route_table
from api.auth import ROLE_DISPATCHER, ROLE_REVISIT, ROLE_UNIT, ROLES, ApiToken, issue_token
from hotline.bootstrap import App, bootstrap
from hotline.settings import Settings
from models.lifecycle import LifecycleEvent, State
from streams.sample_day import build_sample_day
from tests.helpers import send_back_to_dispatcher

PHONE = "13812345678"
PHONE_ORDER = "API-PHONE-0001"
ROUTES = route_table()


def _phone_order() -> dict[str, Any]:
    return {
        "order_id": PHONE_ORDER,
        "channel": "12345热线",
        "received_at": "2026-11-24T09:30:00",
        "title": "企业门口道路积水",
        "text": f"朱泾镇某厂门口道路积水严重，车辆无法进出，联系电话{PHONE}。",
        "caller": f"王先生 {PHONE}",
        "enterprise_name": "上海朱泾示例机械有限公司",
        "address": "朱泾镇新农路 100 号",
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A database with 30 sample-day orders routed by the bundled model, and that model."""
    db = Path(tmp_path_factory.mktemp("api")) / "seed.db"
    app = bootstrap(Settings(database_url=f"sqlite:///{db}"), registry=CollectorRegistry())
    messages = [m for m in build_sample_day() if isinstance(m, dict) and "corpus_id" in m][:30]
    app.router.receive_batch([*messages, _phone_order()])
    send_back_to_dispatcher(app, 2, keep={PHONE_ORDER})
    app.store.close()
    return db, app.router.classifier


def _app(seeded: tuple[Path, object], tmp_path: Path, **settings: Any) -> App:
    template, classifier = seeded
    db = tmp_path / "api.db"
    shutil.copy(template, db)
    return bootstrap(
        Settings(database_url=f"sqlite:///{db}", **settings),
        registry=CollectorRegistry(), classifier=classifier,
    )


@pytest.fixture
def app(seeded: tuple[Path, object], tmp_path: Path) -> Iterator[App]:
    the_app = _app(seeded, tmp_path)
    yield the_app
    the_app.store.close()


@pytest.fixture
def client(app: App) -> TestClient:
    return TestClient(create_api(app))


def bearer(app: App, role: str, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(app.store.engine, role=role, name=name).token}"}


def _manual(app: App) -> str:
    rows = app.store.queue("manual")
    assert rows, "the seeded batch should leave orders for the dispatcher"
    return rows[0].id


def _dispatched(app: App) -> tuple[str, str]:
    row = app.store.queue("dispatched")[0]
    assert row.lead_unit is not None
    return row.id, row.lead_unit


def _other_unit(app: App, unit: str) -> str:
    return next(name for name in app.router.config.unit_by_name if name != unit)


def _body_for(path: str) -> dict[str, Any]:
    bodies = {
        "return": {"reason": "不属于本单位职责"},
        "reply": {"reply": "已办理"},
        "revisit": {"contacted": "已联系", "solved": "已解决", "satisfaction": "满意"},
        "dispatch": {"unit": "区税务局"},
        "supervise": {"reason": "群众反映强烈"},
    }
    return bodies.get(path.rsplit("/", 1)[-1], {})


def _call(client: TestClient, method: str, path: str, order_id: str,
          headers: dict[str, str]) -> Any:
    url = path.replace("{order_id}", order_id).replace("{name}", "manual")
    body = _body_for(path) if method == "POST" else None
    return client.request(method, url, headers=headers, json=body)


# ---- authorization on every route --------------------------------------------------------------
def test_the_route_table_covers_the_issue() -> None:
    paths = {(m, p) for m, p, _ in ROUTES}
    for expected in [
        ("GET", "/api/orders"), ("GET", "/api/orders/{order_id}"),
        ("POST", "/api/orders/{order_id}/accept"), ("POST", "/api/orders/{order_id}/return"),
        ("POST", "/api/orders/{order_id}/reply"), ("GET", "/api/revisits"),
        ("POST", "/api/orders/{order_id}/revisit"), ("GET", "/api/queues/{name}"),
        ("POST", "/api/orders/{order_id}/dispatch"), ("GET", "/api/console"),
    ]:
        assert expected in paths
    assert all(roles and set(roles) <= set(ROLES) for _, _, roles in ROUTES)


def test_every_app_route_is_authenticated_or_listed_public(client: TestClient) -> None:
    """A route added to the app outside the role-checked routers fails here."""
    from fastapi.routing import APIRoute

    table = {(m, p) for m, p, _ in ROUTES}
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods:
            assert (method, route.path) in table or route.path in PUBLIC_PATHS, route.path


@pytest.mark.parametrize(("method", "path", "roles"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_route_without_a_valid_token_is_401(
    app: App, client: TestClient, method: str, path: str, roles: tuple[str, ...]
) -> None:
    order_id = _manual(app)
    revoked = issue_token(app.store.engine, role=roles[0], name="区税务局")
    from api.auth import revoke_token

    assert revoke_token(app.store.engine, revoked.token_id)
    forged = revoked.token.rsplit(".", 1)[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {revoked.token}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {revoked.token}"},
    ):
        response = _call(client, method, path, order_id, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "令牌" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "roles"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_route_refuses_the_roles_it_does_not_admit(
    app: App, client: TestClient, method: str, path: str, roles: tuple[str, ...]
) -> None:
    order_id, unit = _dispatched(app)
    names = {ROLE_UNIT: unit, ROLE_DISPATCHER: "张三", ROLE_REVISIT: "李四"}
    for role in set(ROLES) - set(roles):
        response = _call(client, method, path, order_id, bearer(app, role, names[role]))
        assert response.status_code == 403, (role, response.text)
        assert "无权" in response.json()["detail"]


UNIT_ORDER_ROUTES = [r for r in ROUTES if ROLE_UNIT in r[2] and "{order_id}" in r[1]]


@pytest.mark.parametrize(("method", "path", "roles"), UNIT_ORDER_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in UNIT_ORDER_ROUTES])
def test_a_unit_cannot_see_or_touch_another_units_order(
    app: App, client: TestClient, method: str, path: str, roles: tuple[str, ...]
) -> None:
    order_id, unit = _dispatched(app)
    intruder = bearer(app, ROLE_UNIT, _other_unit(app, unit))
    before = len(app.store.history(order_id))
    response = _call(client, method, path, order_id, intruder)
    assert response.status_code in (403, 404)
    assert len(app.store.history(order_id)) == before  # nothing recorded, not even a rejection


def test_a_units_list_holds_only_its_own_orders(app: App, client: TestClient) -> None:
    order_id, unit = _dispatched(app)
    mine = client.get("/api/orders", headers=bearer(app, ROLE_UNIT, unit)).json()
    assert order_id in {o["id"] for o in mine["orders"]}
    assert all(o["lead_unit"] == unit or unit in o["co_units"] for o in mine["orders"])
    other = client.get("/api/orders", headers=bearer(app, ROLE_UNIT, _other_unit(app, unit)))
    assert order_id not in {o["id"] for o in other.json()["orders"]}


# ---- the lifecycle through the API -------------------------------------------------------------
def test_manual_dispatch_to_revisit_closes_the_loop_with_an_audit_trail(
    app: App, client: TestClient
) -> None:
    order_id = _manual(app)
    dispatcher = bearer(app, ROLE_DISPATCHER, "张三")
    queue = client.get("/api/queues/manual", headers=dispatcher).json()
    item = next(o for o in queue["orders"] if o["id"] == order_id)
    assert 1 <= len(item["suggestions"]) <= 3
    unit = item["suggestions"][0]["unit"]

    r = client.post(f"/api/orders/{order_id}/dispatch", json={"unit": unit}, headers=dispatcher)
    assert r.status_code == 200 and r.json()["order"]["state"] == State.DISPATCHED.value
    labels = [t for t in app.store.training_labels() if t.order_id == order_id]
    assert [(t.unit, t.source, t.actor) for t in labels] == [
        (unit, "manual_dispatch", "dispatcher:张三")
    ]

    as_unit = bearer(app, ROLE_UNIT, unit)
    assert order_id in {o["id"] for o in client.get("/api/orders", headers=as_unit).json()["orders"]}
    assert client.post(f"/api/orders/{order_id}/accept", headers=as_unit).status_code == 200
    r = client.post(f"/api/orders/{order_id}/reply", json={"reply": "已约企业现场核实并答复"},
                    headers=as_unit)
    assert r.json()["order"]["state"] == State.REPLIED.value

    revisit = bearer(app, ROLE_REVISIT, "李四")
    due = client.get("/api/revisits", headers=revisit).json()
    assert order_id in {o["id"] for o in due["orders"]}
    r = client.post(f"/api/orders/{order_id}/revisit", headers=revisit,
                    json={"contacted": "已联系", "solved": "已解决", "satisfaction": "满意"})
    assert r.status_code == 200 and r.json()["order"]["state"] == State.CLOSED.value

    detail = client.get(f"/api/orders/{order_id}", headers=dispatcher).json()
    trail = [(e["name"], e["actor"]) for e in detail["history"] if e["accepted"]]
    assert trail[-4:] == [
        ("派单", "dispatcher:张三"), ("签收", unit), ("反馈", unit), ("回访", "revisit:李四"),
    ]
    assert detail["revisits"][0]["satisfaction"] == "满意"


def test_unsatisfied_revisit_reopens_and_shows_in_the_reopened_queue(
    app: App, client: TestClient
) -> None:
    order_id, unit = _dispatched(app)
    as_unit = bearer(app, ROLE_UNIT, unit)
    client.post(f"/api/orders/{order_id}/accept", headers=as_unit)
    client.post(f"/api/orders/{order_id}/reply", json={"reply": "已处理"}, headers=as_unit)
    r = client.post(f"/api/orders/{order_id}/revisit", headers=bearer(app, ROLE_REVISIT, "李四"),
                    json={"contacted": "已联系", "solved": "未解决", "satisfaction": "不满意"})
    assert r.json()["events"] == ["RevisitRecorded", "OrderReopened"]
    console = client.get("/api/console", headers=bearer(app, ROLE_DISPATCHER, "张三")).json()
    assert order_id in {o["id"] for o in console["queues"]["reopened"]["orders"]}


def test_return_with_reason_redispatches_away_from_the_unit(app: App, client: TestClient) -> None:
    order_id, unit = _dispatched(app)
    as_unit = bearer(app, ROLE_UNIT, unit)
    r = client.post(f"/api/orders/{order_id}/return", headers=as_unit,
                    json={"reason": "该事项属于其他部门职责"})
    assert r.status_code == 200
    row = app.store.get_order(order_id)
    assert row is not None and row.lead_unit != unit and unit in row.returned_units
    assert client.get(f"/api/orders/{order_id}", headers=as_unit).status_code == 404
    returned = next(e for e in app.store.history(order_id) if e.kind == "OrderReturned")
    assert returned.actor == unit and returned.data["reason"] == "该事项属于其他部门职责"


def test_a_rejected_event_answers_409_in_chinese_and_is_recorded(
    app: App, client: TestClient
) -> None:
    order_id, unit = _dispatched(app)
    r = client.post(f"/api/orders/{order_id}/reply", json={"reply": "已处理"},
                    headers=bearer(app, ROLE_UNIT, unit))
    assert r.status_code == 409
    assert r.json()["detail"] == "工单尚未签收，请先签收再反馈"
    assert any(not e.accepted for e in app.store.history(order_id))


def test_invalid_bodies_answer_422_in_chinese(app: App, client: TestClient) -> None:
    order_id, unit = _dispatched(app)
    as_unit = bearer(app, ROLE_UNIT, unit)
    r = client.post(f"/api/orders/{order_id}/return", json={}, headers=as_unit)
    assert r.status_code == 422 and "请求参数无效" in r.json()["detail"]
    dispatcher = bearer(app, ROLE_DISPATCHER, "张三")
    r = client.post(f"/api/orders/{_manual(app)}/dispatch", json={"unit": "不存在的局"},
                    headers=dispatcher)
    assert r.status_code == 422 and "未知的承办单位" in r.json()["detail"]
    r = client.post(f"/api/orders/{order_id}/accept", headers={**as_unit, "Idempotency-Key": "bad key!"})
    assert r.status_code == 422


def test_a_retried_request_with_the_same_idempotency_key_changes_nothing(
    app: App, client: TestClient
) -> None:
    order_id, unit = _dispatched(app)
    headers = {**bearer(app, ROLE_UNIT, unit), "Idempotency-Key": "accept-1"}
    first = client.post(f"/api/orders/{order_id}/accept", headers=headers)
    again = client.post(f"/api/orders/{order_id}/accept", headers=headers)
    assert first.json()["status"] == "applied" and again.json()["status"] == "duplicate"
    accepted = [e for e in app.store.history(order_id) if e.kind == "OrderAccepted"]
    assert len(accepted) == 1 and accepted[0].accepted


def test_kafka_mode_sends_the_event_and_answers_202(
    seeded: tuple[Path, object], tmp_path: Path
) -> None:
    app = _app(seeded, tmp_path, kafka_bootstrap="127.0.0.1:1")
    sent: list[LifecycleEvent] = []
    client = TestClient(create_api(app, send_events=lambda events: sent.extend(events) or 1))
    order_id, unit = _dispatched(app)
    before = len(app.store.history(order_id))
    r = client.post(f"/api/orders/{order_id}/accept",
                    headers={**bearer(app, ROLE_UNIT, unit), "Idempotency-Key": "k-1"})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert [(e.kind, e.actor, e.order_id) for e in sent] == [("OrderAccepted", unit, order_id)]
    assert sent[0].event_id == r.json()["event_id"]
    assert len(app.store.history(order_id)) == before  # the workers apply it, not the API


# ---- personal data -----------------------------------------------------------------------------
def test_units_see_their_callers_phone_and_the_console_masks_it(
    app: App, client: TestClient
) -> None:
    row = app.store.get_order(PHONE_ORDER)
    assert row is not None
    dispatcher = bearer(app, ROLE_DISPATCHER, "张三")
    if row.lead_unit is None:
        client.post(f"/api/orders/{PHONE_ORDER}/dispatch", json={"unit": "朱泾镇"},
                    headers=dispatcher)
        row = app.store.get_order(PHONE_ORDER)
        assert row is not None
    unit = row.lead_unit
    assert unit is not None
    own = client.get(f"/api/orders/{PHONE_ORDER}", headers=bearer(app, ROLE_UNIT, unit)).json()
    assert PHONE in own["caller"] and PHONE in own["text"]

    masked = client.get(f"/api/orders/{PHONE_ORDER}", headers=dispatcher).json()
    console = client.get("/api/console", headers=dispatcher).text
    for shown in (masked["caller"], masked["text"], console):
        assert PHONE not in shown
    assert "138****5678" in masked["caller"]


# ---- tokens ------------------------------------------------------------------------------------
def test_tokens_are_stored_hashed(app: App) -> None:
    issued = issue_token(app.store.engine, role=ROLE_UNIT, name="区税务局")
    secret = issued.token.rsplit(".", 1)[1]
    with Session(app.store.engine) as s:
        row = s.exec(select(ApiToken).where(ApiToken.token_id == issued.token_id)).one()
    assert secret not in row.secret_hash and issued.token not in row.secret_hash
    assert len(row.secret_hash) == 64


def test_token_command_issues_and_revokes(
    app: App, client: TestClient, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hotline.cli import main

    monkeypatch.setenv("HOTLINE_DATABASE_URL", str(app.store.engine.url))
    assert main(["token", "--unit", "区税务局"]) == 0
    token = capsys.readouterr().out.strip()
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert (me["role"], me["name"], me["actor"]) == ("unit", "区税务局", "区税务局")

    assert main(["token", "--unit", "区税务局", "--revoke", me["token_id"]]) == 0
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    assert main(["token", "--role", "dispatcher", "--name", "张三"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["actor"] == "dispatcher:张三"
    with pytest.raises(SystemExit, match="未知的承办单位"):
        main(["token", "--unit", "不存在的局"])


# ---- documents and metrics ---------------------------------------------------------------------
def test_openapi_documents_roles_and_the_console_is_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["paths"]["/api/orders/{order_id}/dispatch"]["post"]["x-roles"] == ["dispatcher"]
    page = client.get("/console/")
    assert page.status_code == 200 and "值班派单台" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/", follow_redirects=False).headers["location"] == "/console/"


def test_metrics_expose_queues_per_unit(app: App, client: TestClient) -> None:
    _, unit = _dispatched(app)
    text = client.get("/metrics").text
    assert f'hotline_unit_open_orders{{state="已派单",unit="{unit}"}}' in text
    assert "hotline_manual_queue_size" in text
