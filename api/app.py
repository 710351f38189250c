"""The HTTP API (接口) and the dispatcher console (派单台), one FastAPI app over the `Router`.

Every write is a `LifecycleEvent` through `Router.apply_event` (embedded) or onto
`workorders.events` (Kafka configured: answered 202, the workers apply it). The actor is the
caller's unit name, ``dispatcher:<name>`` or ``revisit:<name>``, so the order's audit trail says
who did it. An ``Idempotency-Key`` header fixes the event id: a retried request changes nothing.

Routes under ``/api`` all need a bearer token; each declares the roles it admits in the OpenAPI
extension ``x-roles`` (the tests walk the route table with it).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from api.auth import (
    ROLE_DISPATCHER,
    ROLE_NAMES,
    ROLE_REVISIT,
    ROLE_UNIT,
    Principal,
    authenticate,
    ensure_token_table,
)
from api.ratelimit import RATE_LIMITED_MESSAGE, RateLimiter
from api.views import (
    Exposure,
    history_json,
    latest_decisions,
    open_counts,
    order_json,
    queue_item,
    unit_load,
    visible_to_unit,
)
from hotline.bootstrap import App
from models.lifecycle import (
    ORDER_ACCEPTED,
    ORDER_CLOSED,
    ORDER_DISPATCHED,
    ORDER_REPLIED,
    ORDER_RETURNED,
    ORDER_SUPERVISED,
    REVISIT_RECORDED,
    InvalidEventData,
    LifecycleEvent,
)
from models.store import QUEUES
from models.tables import WorkOrder, now_local

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
CONSOLE_QUEUES: tuple[str, ...] = ("new", "dispatched", "manual", "overdue", "reopened", "supervised")
CONSOLE_LIMIT = 100  # rows per console queue (the count is always the full one)
_IDEMPOTENCY_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

EventSender = Callable[[Sequence[LifecycleEvent]], int]

_bearer = HTTPBearer(auto_error=False, description="hotline token 签发的访问令牌")


# ---- request bodies ---------------------------------------------------------------------------
class ReturnIn(BaseModel):
    """退单"""

    reason: str = Field(min_length=1, max_length=1000, description="退单理由")
    beyond_power: bool = Field(default=False, description="街镇无力解决（触发条线部门为主）")
    suggested_unit: str | None = Field(default=None, max_length=100, description="建议改派单位")


class ReplyIn(BaseModel):
    """反馈（办结报告）"""

    reply: str = Field(min_length=1, max_length=5000, description="办理结果")


class RevisitIn(BaseModel):
    """回访结果"""

    contacted: str = Field(description="已联系 / 未联系")
    solved: str | None = Field(default=None, description="已解决 / 未解决")
    satisfaction: str | None = Field(default=None, description="满意 / 基本满意 / 不满意")
    note: str | None = Field(default=None, max_length=2000, description="回访记录")


class DispatchIn(BaseModel):
    """人工派单"""

    unit: str = Field(min_length=1, max_length=100, description="主办单位")
    co_units: list[str] = Field(default_factory=list, max_length=10, description="协办单位")
    note: str | None = Field(default=None, max_length=1000, description="派单说明")


class SuperviseIn(BaseModel):
    """督办"""

    reason: str = Field(min_length=1, max_length=1000, description="督办理由")


# ---- the app ---------------------------------------------------------------------------------
class ApiContext:
    """What the route functions share: the app, the rate limiter, the write lock, the sender."""

    def __init__(self, app: App, send_events: EventSender | None) -> None:
        self.app = app
        self.engine = app.store.engine
        self.limiter = RateLimiter(
            per_token=app.settings.api_rate_per_token,
            per_client=app.settings.api_rate_per_client,
        )
        self.write_lock = threading.Lock()  # the Router is not thread-safe
        self.send_events = send_events

    @property
    def kafka(self) -> bool:
        return bool(self.app.settings.kafka_bootstrap)


def _kafka_sender(app: App) -> EventSender:
    def send(events: Sequence[LifecycleEvent]) -> int:
        from streams.kafka_io import send_events

        return send_events(app.settings, events)

    return send


def create_api(app: App, *, send_events: EventSender | None = None) -> FastAPI:
    """The FastAPI app for ``app``; ``send_events`` replaces the Kafka producer in tests."""
    ensure_token_table(app.store.engine)
    sender = send_events or (_kafka_sender(app) if app.settings.kafka_bootstrap else None)
    ctx = ApiContext(app, sender)
    api = FastAPI(
        title="12345 涉企工单派单接口",
        description="承办单位、回访员与值班派单员的接口；令牌由 `hotline token` 签发。",
        version="1.0",
    )
    api.state.ctx = ctx
    _install_handlers(api)
    _install_rate_limit(api, ctx)
    for router in ROUTERS:
        api.include_router(router)
    _install_public(api, ctx)
    return api


def _install_handlers(api: FastAPI) -> None:
    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = "、".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "请求体"
                          for e in exc.errors())
        return JSONResponse(
            status_code=422,
            content={"detail": f"请求参数无效：{fields}", "errors": _plain(exc.errors())},
        )


def _plain(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"loc": list(e.get("loc", ())), "type": e.get("type")} for e in errors]


def _install_rate_limit(api: FastAPI, ctx: ApiContext) -> None:
    @api.middleware("http")
    async def rate_limit(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if request.url.path.startswith("/api/"):
            client = request.client.host if request.client else "unknown"
            wait = ctx.limiter.check(
                client=client, authorization=request.headers.get("authorization")
            )
            if wait:
                return JSONResponse(
                    status_code=429, content={"detail": RATE_LIMITED_MESSAGE},
                    headers={"Retry-After": str(wait)},
                )
        response: Response = await call_next(request)
        if request.url.path.startswith("/console"):
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
            )
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


# ---- authentication ---------------------------------------------------------------------------
def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def requires(*roles: str) -> Callable[..., Principal]:
    """A dependency: the caller's principal, 401 without a valid token, 403 for another role."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized("缺少访问令牌，请在 Authorization 头中提供 Bearer 令牌")
        ctx: ApiContext = request.app.state.ctx
        principal = authenticate(ctx.engine, credentials.credentials)
        if principal is None:
            raise _unauthorized("访问令牌无效或已吊销")
        if principal.role not in roles:
            allowed = "、".join(ROLE_NAMES[r] for r in roles)
            raise HTTPException(status_code=403, detail=f"当前角色无权访问该接口（仅限{allowed}）")
        return principal

    return dependency


UnitCaller = Annotated[Principal, Depends(requires(ROLE_UNIT))]
AnyCaller = Annotated[Principal, Depends(requires(ROLE_UNIT, ROLE_DISPATCHER, ROLE_REVISIT))]
RevisitCaller = Annotated[Principal, Depends(requires(ROLE_REVISIT, ROLE_DISPATCHER))]
DispatcherCaller = Annotated[Principal, Depends(requires(ROLE_DISPATCHER))]


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]


def _roles(*roles: str) -> dict[str, Any]:
    return {"x-roles": list(roles)}


def _idempotency(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_RE.match(value):
        raise HTTPException(
            status_code=422,
            detail="Idempotency-Key 格式无效（1-100 个字母、数字或 . _ : -）",
        )
    return value


IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="重试同一请求时使用同一个键")
]


# ---- shared helpers ---------------------------------------------------------------------------
def _order_or_404(ctx: ApiContext, order_id: str, principal: Principal) -> WorkOrder:
    row = ctx.app.store.get_order(order_id)
    if row is None or (principal.role == ROLE_UNIT and not visible_to_unit(row, principal.name)):
        raise HTTPException(status_code=404, detail="工单不存在或不属于本单位")
    return row


def _order_detail(ctx: ApiContext, row: WorkOrder, exposure: Exposure) -> dict[str, Any]:
    store = ctx.app.store
    decision = latest_decisions(store, [row.id]).get(row.id)
    body = order_json(row, exposure, decision)
    body["history"] = history_json(store.history(row.id), exposure)
    body["revisits"] = [
        {"at": r.at.isoformat(), "by": r.by, "contacted": r.contacted, "solved": r.solved,
         "satisfaction": r.satisfaction}
        for r in store.revisits(row.id)
    ]
    return body


def _items(ctx: ApiContext, rows: Sequence[WorkOrder]) -> list[dict[str, Any]]:
    decisions = latest_decisions(ctx.app.store, [r.id for r in rows])
    return [queue_item(r, decisions.get(r.id)) for r in rows]


def _write(
    ctx: ApiContext,
    principal: Principal,
    order_id: str,
    kind: str,
    data: dict[str, Any],
    idempotency_key: str | None,
) -> JSONResponse:
    """Apply (or queue on Kafka) one lifecycle event on behalf of ``principal``."""
    key = _idempotency(idempotency_key) or uuid.uuid4().hex
    event = LifecycleEvent(
        event_id=f"{order_id}:api:{kind}:{key}", order_id=order_id, kind=kind,
        at=now_local(), actor=principal.actor, data=data,
    )
    if ctx.kafka and ctx.send_events is not None:
        ctx.send_events([event])
        return JSONResponse(
            status_code=202, content={"status": "queued", "event_id": event.event_id}
        )
    with ctx.write_lock:
        outcome = ctx.app.router.apply_event(event)
    result = outcome.result
    if result.rejected is not None:
        status = 422 if isinstance(result.rejected, InvalidEventData) else 409
        return JSONResponse(
            status_code=status,
            content={"detail": result.rejected.reason, "code": result.rejected.code,
                     "event_id": event.event_id},
        )
    row = ctx.app.store.get_order(order_id)
    exposure = Exposure.for_role(principal.role)
    body: dict[str, Any] = {
        "status": "duplicate" if result.duplicate else "applied",
        "event_id": event.event_id,
        "events": [e.kind for e in result.applied],
        "order": order_json(row, exposure) if row is not None else None,
    }
    if outcome.decision is not None:
        body["redispatch"] = outcome.decision.to_json()
    return JSONResponse(status_code=200, content=body)


def _check_units(ctx: ApiContext, names: Iterable[str]) -> None:
    known = ctx.app.router.config.unit_by_name
    unknown = [n for n in names if n not in known]
    if unknown:
        raise HTTPException(status_code=422, detail=f"未知的承办单位：{'、'.join(unknown)}")


# ---- units (承办单位) --------------------------------------------------------------------------
units = APIRouter(prefix="/api", tags=["承办单位"])

@units.get("/orders", summary="本单位工单列表", openapi_extra=_roles(ROLE_UNIT))
def list_orders(principal: UnitCaller, ctx: Ctx, include_closed: bool = False) -> dict[str, Any]:
    rows = ctx.app.store.unit_orders(principal.name, open_only=not include_closed)
    decisions = latest_decisions(ctx.app.store, [row.id for row in rows])
    exposure = Exposure.for_role(ROLE_UNIT)
    orders = [order_json(row, exposure, decisions.get(row.id)) for row in rows]
    return {"unit": principal.name, "count": len(orders), "orders": orders}

@units.get(
    "/orders/{order_id}", summary="工单详情与处理记录",
    openapi_extra=_roles(ROLE_UNIT, ROLE_DISPATCHER, ROLE_REVISIT),
)
def get_order(order_id: str, principal: AnyCaller, ctx: Ctx) -> dict[str, Any]:
    row = _order_or_404(ctx, order_id, principal)
    return _order_detail(ctx, row, Exposure.for_role(principal.role))

@units.post("/orders/{order_id}/accept", summary="签收", openapi_extra=_roles(ROLE_UNIT))
def accept(order_id: str, principal: UnitCaller, ctx: Ctx, key: IdempotencyKey = None) -> JSONResponse:
    _order_or_404(ctx, order_id, principal)
    return _write(ctx, principal, order_id, ORDER_ACCEPTED, {}, key)

@units.post("/orders/{order_id}/return", summary="退单", openapi_extra=_roles(ROLE_UNIT))
def return_order(
    order_id: str, body: ReturnIn, principal: UnitCaller, ctx: Ctx, key: IdempotencyKey = None
) -> JSONResponse:
    _order_or_404(ctx, order_id, principal)
    if body.suggested_unit:
        _check_units(ctx, [body.suggested_unit])
    data: dict[str, Any] = {"reason": body.reason, "beyond_power": body.beyond_power}
    if body.suggested_unit:
        data["suggested_unit"] = body.suggested_unit
    return _write(ctx, principal, order_id, ORDER_RETURNED, data, key)

@units.post("/orders/{order_id}/reply", summary="反馈（办结报告）", openapi_extra=_roles(ROLE_UNIT))
def reply(
    order_id: str, body: ReplyIn, principal: UnitCaller, ctx: Ctx, key: IdempotencyKey = None
) -> JSONResponse:
    _order_or_404(ctx, order_id, principal)
    return _write(ctx, principal, order_id, ORDER_REPLIED, {"reply": body.reply}, key)


# ---- revisit staff (回访员) --------------------------------------------------------------------
revisit = APIRouter(prefix="/api", tags=["回访"])

@revisit.get("/revisits", summary="待回访工单（涉企工单全量回访）",
       openapi_extra=_roles(ROLE_REVISIT, ROLE_DISPATCHER))
def revisits_due(principal: RevisitCaller, ctx: Ctx) -> dict[str, Any]:
    rows = ctx.app.store.queue("revisit_due")
    exposure = Exposure.for_role(principal.role)
    orders = [order_json(row, exposure) for row in rows]
    return {
        "count": len(orders),
        "enterprise_count": sum(1 for row in rows if row.is_enterprise),
        "orders": orders,
    }

@revisit.post("/orders/{order_id}/revisit", summary="记录回访（联系/解决/满意度）",
        openapi_extra=_roles(ROLE_REVISIT, ROLE_DISPATCHER))
def record_revisit(
    order_id: str, body: RevisitIn, principal: RevisitCaller, ctx: Ctx, key: IdempotencyKey = None
) -> JSONResponse:
    _order_or_404(ctx, order_id, principal)
    data = body.model_dump(exclude_none=True)
    return _write(ctx, principal, order_id, REVISIT_RECORDED, data, key)


# ---- dispatchers (值班派单员) ------------------------------------------------------------------
dispatchers = APIRouter(prefix="/api", tags=["派单员"])
_only_dispatcher = _roles(ROLE_DISPATCHER)

@dispatchers.get("/queues/{name}", summary="队列：new/manual/dispatched/overdue/reopened/supervised/"
       "revisit_due", openapi_extra=_only_dispatcher)
def queue(name: str, principal: DispatcherCaller, ctx: Ctx) -> dict[str, Any]:
    if name not in QUEUES:
        raise HTTPException(status_code=404, detail=f"未知队列 {name}，可用：{'、'.join(QUEUES)}")
    rows = ctx.app.store.queue(name)
    return {"queue": name, "count": len(rows), "orders": _items(ctx, rows)}

@dispatchers.get("/units/load", summary="各单位在办量", openapi_extra=_only_dispatcher)
def load(principal: DispatcherCaller, ctx: Ctx) -> dict[str, Any]:
    return {"units": unit_load(ctx.app.store)}

@dispatchers.get("/console", summary="派单台数据（全部队列与单位负荷）", openapi_extra=_only_dispatcher)
def console(principal: DispatcherCaller, ctx: Ctx) -> dict[str, Any]:
    return _console_state(ctx, principal)

@dispatchers.post("/orders/{order_id}/dispatch", summary="人工派单（记为训练标注）", openapi_extra=_only_dispatcher)
def dispatch(
    order_id: str, body: DispatchIn, principal: DispatcherCaller, ctx: Ctx, key: IdempotencyKey = None
) -> JSONResponse:
    _order_or_404(ctx, order_id, principal)
    co_units = [u for u in dict.fromkeys(body.co_units) if u != body.unit]
    _check_units(ctx, [body.unit, *co_units])
    data: dict[str, Any] = {
        "unit": body.unit, "co_units": co_units, "manual": True, "by_dispatcher": True,
    }
    if body.note:
        data["note"] = body.note
    return _write(ctx, principal, order_id, ORDER_DISPATCHED, data, key)

@dispatchers.post("/orders/{order_id}/supervise", summary="督办", openapi_extra=_only_dispatcher)
def supervise(
    order_id: str, body: SuperviseIn, principal: DispatcherCaller, ctx: Ctx, key: IdempotencyKey = None
) -> JSONResponse:
    _order_or_404(ctx, order_id, principal)
    return _write(ctx, principal, order_id, ORDER_SUPERVISED, {"reason": body.reason}, key)

@dispatchers.post("/orders/{order_id}/close", summary="办结（非涉企工单）", openapi_extra=_only_dispatcher)
def close(order_id: str, principal: DispatcherCaller, ctx: Ctx, key: IdempotencyKey = None) -> JSONResponse:
    _order_or_404(ctx, order_id, principal)
    return _write(ctx, principal, order_id, ORDER_CLOSED, {}, key)


def _console_state(ctx: ApiContext, principal: Principal) -> dict[str, Any]:
    store = ctx.app.store
    queues: dict[str, Any] = {}
    for name in CONSOLE_QUEUES:
        rows = store.queue(name)
        shown = rows[-CONSOLE_LIMIT:][::-1] if name == "dispatched" else rows[:CONSOLE_LIMIT]
        queues[name] = {"count": len(rows), "orders": _items(ctx, shown)}
    return {
        "generated_at": now_local().isoformat(),
        "dispatcher": principal.name,
        "model_version": getattr(ctx.app.router.classifier, "version", ""),
        "mode": "kafka" if ctx.kafka else "embedded",
        "queues": queues,
        "load": unit_load(store),
        "units": sorted(ctx.app.router.config.unit_by_name),
    }


# ---- any role --------------------------------------------------------------------------------
common = APIRouter(prefix="/api", tags=["通用"])

@common.get("/me", summary="当前令牌的身份",
       openapi_extra=_roles(ROLE_UNIT, ROLE_DISPATCHER, ROLE_REVISIT))
def me(principal: AnyCaller, ctx: Ctx) -> dict[str, Any]:
    return {
        "token_id": principal.token_id, "role": principal.role,
        "role_name": ROLE_NAMES[principal.role], "name": principal.name,
        "actor": principal.actor,
    }


ROUTERS: tuple[APIRouter, ...] = (units, revisit, dispatchers, common)


def route_table() -> list[tuple[str, str, tuple[str, ...]]]:
    """Every authenticated route as (method, path, roles admitted), from the routers."""
    table: list[tuple[str, str, tuple[str, ...]]] = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            roles = tuple((route.openapi_extra or {}).get("x-roles", ()))
            table.extend((method, route.path, roles) for method in sorted(route.methods or ()))
    return table


# ---- public: console files, health, metrics ----------------------------------------------------
PUBLIC_PATHS: frozenset[str] = frozenset({"/", "/healthz", "/metrics", "/console"})


def _install_public(api: FastAPI, ctx: ApiContext) -> None:
    @api.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(url="/console/")

    @api.get("/healthz", summary="健康检查", tags=["通用"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "mode": "kafka" if ctx.kafka else "embedded"}

    @api.get("/metrics", summary="Prometheus 指标", tags=["通用"])
    def metrics() -> Response:
        ctx.app.router.refresh_gauges()
        ctx.app.router.metrics.set_unit_open(open_counts(ctx.app.store))
        body = generate_latest(ctx.app.router.metrics.registry)
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    api.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")


__all__ = [
    "PUBLIC_PATHS",
    "ROUTERS",
    "ApiContext",
    "EventSender",
    "create_api",
    "requires",
    "route_table",
]
