"""Versioned model directories (模型版本库) and the learning loop (持续学习).

Layout of a registry directory (default `var/models`)::

    var/models/<model version>/   a model directory (metadata.json, model.joblib)
    var/models/CURRENT            the version in service
    var/models/history.jsonl      every promotion / rollback, newest last (for rollback)

`retrain` trains a candidate on history plus corrections (dispatchers' manual dispatches and
units' 退单 naming the right unit), evaluates it against the current model on the same held-out
orders, and promotes it only when it is not worse.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from classifier.datasets import LabeledText
from classifier.evaluate import evaluate
from classifier.model import TrainOptions, load_model, read_metadata, save_model, train_model

CURRENT_FILE = "CURRENT"
HISTORY_FILE = "history.jsonl"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (message in Chinese)."""


@dataclass(frozen=True)
class ModelEntry:
    version: str
    path: Path
    trained_at: str
    n_train: int
    accuracy: float | None
    current: bool


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- reading -------------------------------------------------------------------------
    def current_version(self) -> str | None:
        f = self.root / CURRENT_FILE
        return f.read_text(encoding="utf-8").strip() or None if f.exists() else None

    def current_path(self) -> Path | None:
        v = self.current_version()
        return self.root / v if v else None

    def entries(self) -> list[ModelEntry]:
        current = self.current_version()
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                meta = read_metadata(d)
            except Exception:  # noqa: BLE001 - a broken dir is listed as such, not fatal
                continue
            val = meta.get("validation", {})
            out.append(ModelEntry(
                version=d.name, path=d, trained_at=str(meta.get("created_at", "")),
                n_train=int(meta.get("n_train", 0)), accuracy=val.get("accuracy"),
                current=d.name == current,
            ))
        return out

    def history(self) -> list[dict[str, Any]]:
        f = self.root / HISTORY_FILE
        if not f.exists():
            return []
        return [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line]

    # ---- writing -------------------------------------------------------------------------
    def add(self, model_dir: Path) -> str:
        """Copy a model directory into the registry under its version; returns the version."""
        version = read_metadata(model_dir)["model_version"]
        target = self.root / version
        if not target.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.copytree(model_dir, target)
        return version

    def promote(self, version: str, *, reason: str, actor: str = "operator") -> None:
        if not (self.root / version).is_dir():
            raise RegistryError(f"模型版本 {version} 不在版本库 {self.root} 中")
        load_model(self.root / version)  # refuses a mismatched or broken model before service
        previous = self.current_version()
        self._write_current(version)
        self._log({"action": "promote", "version": version, "previous": previous,
                   "reason": reason, "actor": actor})

    def rollback(self, *, actor: str = "operator") -> str:
        """Back to the version in service before the current one."""
        current = self.current_version()
        if current is None:
            raise RegistryError("版本库中没有在用模型，无法回滚")
        for record in reversed(self.history()):
            if record.get("version") == current and record.get("previous"):
                previous = str(record["previous"])
                if (self.root / previous).is_dir():
                    self._write_current(previous)
                    self._log({"action": "rollback", "version": previous, "previous": current,
                               "reason": "回滚", "actor": actor})
                    return previous
        raise RegistryError(f"在用模型 {current} 之前没有可回滚的版本")

    def _write_current(self, version: str) -> None:
        tmp = self.root / f".{CURRENT_FILE}.tmp"
        tmp.write_text(version + "\n", encoding="utf-8")
        tmp.replace(self.root / CURRENT_FILE)

    def _log(self, record: dict[str, Any]) -> None:
        record = {"at": datetime.now().isoformat(timespec="seconds"), **record}
        with (self.root / HISTORY_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class RetrainResult:
    candidate: str
    current: str | None
    candidate_scores: dict[str, Any]
    current_scores: dict[str, Any] | None
    promoted: bool
    reason: str
    n_history: int
    n_corrections: int
    n_holdout: int


def split_holdout(
    records: Sequence[LabeledText], fraction: float, seed: int
) -> tuple[list[LabeledText], list[LabeledText]]:
    """A seeded split by order id: the same history always gives the same held-out orders."""
    ids = sorted({r.order_id for r in records})
    rng = random.Random(seed)
    held = set(rng.sample(ids, max(1, int(len(ids) * fraction)))) if ids else set()
    train = [r for r in records if r.order_id not in held]
    return train, [r for r in records if r.order_id in held]


def _not_worse(cand: dict[str, Any], cur: dict[str, Any], tolerance: float) -> tuple[bool, str]:
    da = cand["accuracy"] - cur["accuracy"]
    df = cand["macro_f1"] - cur["macro_f1"]
    ok = da >= -tolerance and df >= -tolerance
    detail = f"准确率 {cur['accuracy']:.3f}→{cand['accuracy']:.3f}，宏平均F1 {cur['macro_f1']:.3f}→{cand['macro_f1']:.3f}"
    return ok, ("不低于在用模型：" if ok else "低于在用模型：") + detail


def retrain(
    registry: ModelRegistry,
    history: Sequence[LabeledText],
    corrections: Sequence[LabeledText],
    *,
    current_path: Path | None,
    name: str = "model",
    holdout_fraction: float = 0.2,
    seed: int = 0,
    tolerance: float = 0.0,
    workdir: Path | None = None,
) -> RetrainResult:
    """Train a candidate on history + corrections, compare with the current model on the same
    held-out history orders, register it, and promote it only when it is not worse."""
    train, holdout = split_holdout(history, holdout_fraction, seed)
    held_ids = {r.order_id for r in holdout}
    # a correction for a held-out order would leak its label into training: keep it out
    extra = [c for c in corrections if c.order_id not in held_ids]
    by_id = {r.order_id: r for r in train}
    for c in extra:  # the person's label wins over the historical one
        by_id[c.order_id] = c
    candidate = train_model(list(by_id.values()), out_dir=None, random_state=seed,
                            options=TrainOptions(name=name))
    cand_scores = evaluate(candidate, holdout)
    tmp = (workdir or registry.root) / f".candidate-{candidate.version}"
    save_model(candidate, tmp)
    version = registry.add(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    cur_scores = None
    current = None
    if current_path is not None:
        current_model = load_model(current_path)
        current = current_model.version
        cur_scores = evaluate(current_model, holdout)
        promoted, reason = _not_worse(cand_scores, cur_scores, tolerance)
    else:
        promoted, reason = True, "版本库中没有在用模型，候选模型直接启用"
    if promoted:
        registry.promote(version, reason=reason, actor="retrain")
    return RetrainResult(
        candidate=version, current=current, candidate_scores=cand_scores,
        current_scores=cur_scores, promoted=promoted, reason=reason, n_history=len(history),
        n_corrections=len(extra), n_holdout=len(holdout),
    )
