"""The in-process phases (本机阶段): model load, the classifier alone, jieba alone, and the
embedded pipeline (the same `Router` handlers on SQLite) at full speed and paced at half rate."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from classifier.tokenize import get_tokenizer
from hotline.bootstrap import App, bootstrap, load_classifier, settle_heap
from hotline.settings import Settings
from models.records import OrderIn
from ops.bench.stats import percentile
from streams.classify_ahead import available as classify_ahead_available
from streams.intake import normalize
from streams.runner import BATCH as EMBEDDED_BATCH
from streams.runner import EmbeddedRunner

CLASSIFY_BATCH = 200  # what a faust batch hands the classifier (streams.app.BATCH)


@dataclass
class LoadedModel:
    model: Any
    load_s: float


def load_model_timed(settings: Settings) -> LoadedModel:
    started = time.perf_counter()
    model = load_classifier(settings)
    return LoadedModel(model=model, load_s=time.perf_counter() - started)


def orders_of(messages: Sequence[dict[str, Any]]) -> list[OrderIn]:
    limit = Settings().max_text_chars  # read once: settings parse the environment each time
    return [normalize(m, max_text_chars=limit) for m in messages]


def classifier_rate(model: Any, orders: Sequence[OrderIn]) -> float:
    """Orders per second through `predict` alone, in pipeline-sized batches (after warm-up)."""
    model.predict(list(orders[:20]), k=3)
    started = time.perf_counter()
    for i in range(0, len(orders), CLASSIFY_BATCH):
        model.predict(list(orders[i : i + CLASSIFY_BATCH]), k=3)
    return len(orders) / (time.perf_counter() - started)


def jieba_rate(orders: Sequence[OrderIn]) -> float:
    """Orders per second through jieba alone (the classifier's tokenizer, same texts)."""
    tokenizer = get_tokenizer()
    texts = [o.full_text for o in orders]
    tokenizer.lcut(texts[0], HMM=False)
    started = time.perf_counter()
    for t in texts:
        tokenizer.lcut(t, HMM=False)
    return len(texts) / (time.perf_counter() - started)


def embedded_app(settings: Settings, model: Any, db_path: Path) -> App:
    """A fresh embedded app on its own SQLite file, sharing the already-loaded model, set up
    as `hotline run` sets up its own (`settle_heap`)."""
    if db_path.exists():
        db_path.unlink()
    local = settings.model_copy(
        update={"database_url": f"sqlite:///{db_path}", "kafka_bootstrap": None}
    )
    app = bootstrap(local, registry=CollectorRegistry(), classifier=model)
    settle_heap()
    return app


def embedded_rate(
    app: App, messages: Sequence[dict[str, Any]], *, classify_ahead: bool = False
) -> float:
    """Orders per second through the whole embedded pipeline (intake to the dispatched row)."""
    runner = EmbeddedRunner(app.router, classify_ahead=classify_ahead)
    started = time.perf_counter()
    outcomes = runner.ingest(list(messages))
    elapsed = time.perf_counter() - started
    bad = [o for o in outcomes if o.status not in ("dispatched", "manual")]
    if bad:
        raise RuntimeError(f"内嵌压测中 {len(bad)} 条工单未派出：{bad[0].status} {bad[0].reason}")
    return len(messages) / elapsed


def embedded_latencies(
    app: App, messages: Sequence[dict[str, Any]], rate: float
) -> list[float]:
    """Latency (ms) of each order offered at ``rate`` per second: from its arrival to its
    batch's dispatched rows being committed. The runner takes what has arrived, up to a batch."""
    runner = EmbeddedRunner(app.router)
    started = time.perf_counter()
    arrivals = [started + i / rate for i in range(len(messages))]
    latencies: list[float] = []
    i = 0
    while i < len(messages):
        now = time.perf_counter()
        if arrivals[i] > now:
            time.sleep(arrivals[i] - now)
            now = time.perf_counter()
        j = i
        while j < len(messages) and j - i < EMBEDDED_BATCH and arrivals[j] <= now:
            j += 1
        runner.ingest(list(messages[i:j]), batch=EMBEDDED_BATCH)
        done = time.perf_counter()
        latencies.extend((done - arrivals[k]) * 1000 for k in range(i, j))
        i = j
    return latencies


def run_local(
    settings: Settings,
    messages: Sequence[dict[str, Any]],
    paced: Sequence[dict[str, Any]],
    work_dir: Path,
) -> dict[str, Any]:
    """Every in-process figure, measured in one go."""
    loaded = load_model_timed(settings)
    settle_heap()  # the ceilings run with the heap as the pipeline's (see `embedded_app`)
    orders = orders_of(messages)
    out: dict[str, Any] = {
        "model_load_s": loaded.load_s,
        "model_version": loaded.model.version,
        "jieba_rate": jieba_rate(orders),
        "classifier_rate": classifier_rate(loaded.model, orders),
    }
    app = embedded_app(settings, loaded.model, work_dir / "bench-embedded.db")
    try:  # `hotline run --no-classify-ahead`: classified in this process
        out["embedded_inline_rate"] = embedded_rate(app, messages)
    finally:
        app.store.close()
    # `hotline run` as it runs by default: with the classify-ahead helper where it can fork and
    # has a second usable core (and HOTLINE_CLASSIFY_PROCESS is not 0)
    out["embedded_classify_process"] = settings.classify_process and classify_ahead_available()
    if out["embedded_classify_process"]:
        app = embedded_app(settings, loaded.model, work_dir / "bench-embedded-ahead.db")
        try:
            out["embedded_ahead_rate"] = embedded_rate(app, messages, classify_ahead=True)
        finally:
            app.store.close()
    out["embedded_pipeline_rate"] = out.get("embedded_ahead_rate", out["embedded_inline_rate"])
    app = embedded_app(settings, loaded.model, work_dir / "bench-embedded-paced.db")
    try:
        half = out["embedded_pipeline_rate"] / 2
        lat = embedded_latencies(app, paced, half)
    finally:
        app.store.close()
    out.update(
        embedded_paced_rate=half,
        embedded_p50_ms=percentile(lat, 50),
        embedded_p99_ms=percentile(lat, 99),
        embedded_paced_orders=len(lat),
    )
    return out
