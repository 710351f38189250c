"""Rate limits (限流): token buckets per token and per client; 429 with a Chinese message."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_api
from api.auth import ROLE_DISPATCHER, issue_token
from api.ratelimit import RATE_LIMITED_MESSAGE, RateLimiter, TokenBuckets
from hotline.bootstrap import bootstrap
from hotline.settings import Settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(60, clock=clock)  # one per second
    assert all(buckets.take("a") == 0 for _ in range(60))
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0  # another key has its own bucket
    clock.now += 1.0
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0


def test_zero_disables_a_limit() -> None:
    buckets = TokenBuckets(0)
    assert all(buckets.take("a") == 0 for _ in range(1000))


def test_per_token_and_per_client_limits_are_both_enforced() -> None:
    limiter = RateLimiter(per_token=2, per_client=3, clock=FakeClock())
    assert limiter.check(client="1.1.1.1", authorization="Bearer a") == 0
    assert limiter.check(client="1.1.1.1", authorization="Bearer a") == 0
    assert limiter.check(client="1.1.1.1", authorization="Bearer a") >= 1  # token spent
    assert limiter.check(client="2.2.2.2", authorization="Bearer b") == 0
    # client 1.1.1.1 has used its 3 requests whatever token it presents now
    assert limiter.check(client="1.1.1.1", authorization="Bearer c") >= 1


def test_the_api_answers_429_in_chinese_with_retry_after(tmp_path: Path) -> None:
    class NoModel:  # rate limiting never reaches the classifier
        version = "none"

        def predict(self, orders: object, k: int = 3) -> list[object]:
            raise AssertionError("not used")

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rl.db'}", api_rate_per_token=3)
    app = bootstrap(settings, registry=CollectorRegistry(), classifier=NoModel())
    client = TestClient(create_api(app))
    token = issue_token(app.store.engine, role=ROLE_DISPATCHER, name="张三").token
    headers = {"Authorization": f"Bearer {token}"}
    codes = [client.get("/api/me", headers=headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.get("/api/me", headers=headers)
    assert limited.json()["detail"] == RATE_LIMITED_MESSAGE
    assert int(limited.headers["retry-after"]) >= 1
    assert client.get("/healthz").status_code == 200  # only /api is limited
    app.store.close()
