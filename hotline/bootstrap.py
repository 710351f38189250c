"""One bootstrap: wires settings, store, classifier, rules and metrics into a `Router`."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from hotline.metrics import Metrics
from hotline.settings import PROJECT_ROOT, Settings


@dataclass
class App:
    settings: Settings
    router: "Router"  # noqa: F821 - imported lazily below

    @property
    def store(self) -> "Store":  # noqa: F821
        return self.router.store


def load_rules(settings: Settings) -> "RoutingConfig":  # noqa: F821
    from routing_rules import default_rules_dir
    from routing_rules.config import load_rules as _load

    return _load(Path(settings.rules_dir) if settings.rules_dir else default_rules_dir())


def current_model_path(settings: Settings, registry: object | None = None) -> Path | None:
    """The model in service: HOTLINE_MODEL_DIR, else the registry's CURRENT, else None."""
    from classifier.registry import ModelRegistry

    if settings.model_dir:
        return Path(settings.model_dir)
    reg = registry or ModelRegistry(settings.models_dir or PROJECT_ROOT / "var" / "models")
    return reg.current_path()  # type: ignore[attr-defined]


def load_classifier(settings: Settings) -> "UnitModel":  # noqa: F821
    from classifier.bundled import ensure_bundled_model
    from classifier.model import load_model

    return load_model(current_model_path(settings) or ensure_bundled_model())


def model_thresholds(model: object) -> dict[str, float] | None:
    thresholds = getattr(model, "thresholds", None)
    return dict(thresholds) if thresholds else None


#: the young generation's collection threshold for `settle_heap` (Python's default: 700)
GC_YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """For a long-running process, once its app is built: move every object alive now (the
    model, the jieba dictionary, the rules, the ORM metadata: a few hundred thousand objects
    that live as long as the process) out of the cyclic garbage collector's reach, so its full
    collections stop rescanning them, and collect the young generation less often (a batch
    allocates tens of thousands of short-lived objects, nearly all freed by reference
    counting). Before this the embedded pipeline spent about a quarter of its time in
    collections. Objects created later are collected as usual."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def bootstrap(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    classifier: object | None = None,
    store: object | None = None,
) -> App:
    """Build the app; tests pass their own registry, classifier or store."""
    from models.store import Store
    from streams.handlers import Router

    settings = settings or Settings()
    config = load_rules(settings)
    model = classifier if classifier is not None else load_classifier(settings)
    the_store = store if store is not None else Store.from_url(settings.database_url)
    the_store.sync_units(
        (u.code, u.name, u.kind, u.duties, list(getattr(u, "places", []) or []))
        for u in config.units
    )
    router = Router(
        store=the_store,
        classifier=model,
        config=config,
        metrics=Metrics(registry if registry is not None else CollectorRegistry()),
        max_text_chars=settings.max_text_chars,
        model_thresholds=model_thresholds(model) if config.settings.thresholds_from_model else None,
    )
    return App(settings=settings, router=router)
