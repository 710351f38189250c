"""One typed settings object (环境配置). Read once by `bootstrap`; nothing connects at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EVENT_LOOPS = ("uvloop", "aio")  # `Settings.event_loop`


class Settings(BaseSettings):
    """Settings from `HOTLINE_*` environment variables; defaults give the embedded mode."""

    model_config = SettingsConfigDict(env_prefix="HOTLINE_", extra="ignore")

    database_url: str = Field(default=f"sqlite:///{PROJECT_ROOT / 'var' / 'hotline.db'}")
    kafka_bootstrap: str | None = None  # unset: embedded mode, no Kafka
    topic_prefix: str = ""
    partitions: int = 4
    rules_dir: Path | None = None  # default: routing_rules/jinshan
    model_dir: Path | None = None  # a fixed model directory (overrides the registry)
    models_dir: Path | None = None  # the model registry (default var/models); CURRENT is served
    metrics_port: int | None = None
    max_text_chars: int = 5000  # longer 诉求内容 is dead-lettered
    worker_id: str = "worker-1"
    # classify in a helper process (分类进程) where this process can fork and has a second
    # core: a Kafka worker's `streams.classify_ahead.ClassifierProcess`, and `hotline run`'s
    # `ClassifyAhead` for ingests of more than one batch; false: in the process itself
    classify_process: bool = True
    # a Kafka worker's asyncio event loop (事件循环): "uvloop" (libuv, the default where it is
    # installed) or "aio" (the standard library's); `streams.app.use_event_loop`
    event_loop: str = "uvloop"
    # how long the broker may hold a Kafka worker's fetch (取数等待, ms) to gather
    # `streams.app.FETCH_MIN_BYTES` of orders while the worker keeps up: fewer, larger fetches
    # under moderate load, for up to this much latency on each order; 0: faust's fetches,
    # answered as soon as one message is there
    fetch_wait_ms: int = 100
    # HTTP API rate limits (限流), requests per minute; 0 turns a limit off
    api_rate_per_token: int = 300  # per bearer token
    api_rate_per_client: int = 600  # per client address, whatever the token

    @field_validator("partitions")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("partitions must be >= 1")
        return v

    @field_validator("max_text_chars")
    @classmethod
    def _limit(cls, v: int) -> int:
        if v < 100:
            raise ValueError("max_text_chars must be >= 100")
        return v

    @field_validator("event_loop")
    @classmethod
    def _loop(cls, v: str) -> str:
        if v not in EVENT_LOOPS:
            raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}")
        return v

    @field_validator("fetch_wait_ms")
    @classmethod
    def _fetch_wait(cls, v: int) -> int:
        if not 0 <= v <= 1000:
            raise ValueError("fetch_wait_ms must be between 0 and 1000")
        return v

    @field_validator("api_rate_per_token", "api_rate_per_client")
    @classmethod
    def _rate(cls, v: int) -> int:
        if v < 0:
            raise ValueError("API rate limits must be >= 0 (0 disables)")
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if not (v.startswith("sqlite") or v.startswith("postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql+psycopg:// URL")
        return v

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
