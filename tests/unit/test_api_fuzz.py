"""The HTTP API fuzzed from its own OpenAPI document (schemathesis, in-process ASGI): whatever the
request, with a valid token of each role, the answer is never a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry

from api.app import create_api
from api.auth import ROLE_DISPATCHER, ROLE_REVISIT, ROLE_UNIT, issue_token
from hotline.bootstrap import bootstrap
from hotline.settings import Settings
from streams.sample_day import build_sample_day

UNIT = "朱泾镇"


def _build() -> tuple[Any, dict[str, str], list[str]]:
    """An API over a database with a few routed sample-day orders, one token per role, and the
    ids of the stored orders."""
    db = Path(tempfile.mkdtemp(prefix="api-fuzz-")) / "fuzz.db"
    app = bootstrap(
        Settings(database_url=f"sqlite:///{db}", api_rate_per_token=1_000_000,
                 api_rate_per_client=1_000_000),
        registry=CollectorRegistry(),
    )
    orders = [m for m in build_sample_day() if isinstance(m, dict) and "corpus_id" in m][:8]
    outcomes = app.router.receive_batch(orders)
    tokens = {
        role: issue_token(app.store.engine, role=role, name=name).token
        for role, name in ((ROLE_UNIT, UNIT), (ROLE_DISPATCHER, "值班长"), (ROLE_REVISIT, "回访组"))
    }
    return create_api(app), tokens, [str(o.order_id) for o in outcomes if o.order_id]


API, TOKENS, ORDER_IDS = _build()
schema = schemathesis.openapi.from_asgi("/openapi.json", API)


def _check(case: Any, role: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKENS[role]}"})
    assert response.status_code < 500, (
        f"{role} {case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    """Each generated request as every role the operation admits (x-roles), and again on a stored
    order, so the fuzzed bodies reach the real handlers and not only the 404 path."""
    roles = case.operation.definition.raw.get("x-roles") or [ROLE_UNIT]
    for i, role in enumerate(roles):
        _check(case, role)
        if case.path_parameters and "order_id" in case.path_parameters:
            case.path_parameters["order_id"] = ORDER_IDS[i % len(ORDER_IDS)]
            _check(case, role)
