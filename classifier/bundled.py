"""The bundled Jinshan model (内置金山模型), trained from the project's own corpus.

`ensure_bundled_model` (re)trains it when the directory is missing, or when the corpus, the
user dictionary or the library versions differ from those recorded in its metadata. The
line model's label is each corpus record's ``line_unit`` (条线单位).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from classifier.datasets import LabeledText, load_dataset
from classifier.model import (
    ModelLoadError,
    TrainOptions,
    read_metadata,
    save_model,
    train_model,
    version_mismatches,
)

PACKAGE_DIR = Path(__file__).resolve().parent
CORPUS_DIR = PACKAGE_DIR / "corpus" / "jinshan"


def bundled_model_dir() -> Path:
    return PACKAGE_DIR / "bundled"


def corpus_files(corpus_dir: Path = CORPUS_DIR) -> list[Path]:
    return sorted(corpus_dir.glob("*.jsonl"))


def corpus_hash(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode("utf-8"))
        h.update(f.read_bytes())
    return h.hexdigest()


def is_held_out(order_id: str) -> bool:
    """Every fourth record of a unit (ids ending 004, 008, …) is kept out of training: those
    make up the bundled sample day (`streams/sample_day.py`), so the demo routes unseen text."""
    tail = order_id.rsplit("-", 1)[-1]
    return tail.isdigit() and int(tail) % 4 == 0


def load_corpus(files: list[Path]) -> list[LabeledText]:
    records: list[LabeledText] = []
    for f in files:
        records.extend(r for r in load_dataset(f, "jsonl") if not is_held_out(r.order_id))
    return records


def is_current(model_dir: Path, files: list[Path]) -> bool:
    """True when ``model_dir`` holds a model of this corpus and these library versions."""
    try:
        meta = read_metadata(model_dir)
    except ModelLoadError:
        return False
    if not (model_dir / "model.joblib").exists():
        return False
    return meta.get("corpus_hash") == corpus_hash(files) and not version_mismatches(
        meta["libraries"]
    )


def ensure_bundled_model(
    force: bool = False, *, corpus_dir: Path = CORPUS_DIR, model_dir: Path | None = None
) -> Path:
    """The bundled model's directory, (re)trained first when missing or stale."""
    target = model_dir or bundled_model_dir()
    files = corpus_files(corpus_dir)
    if not files:
        raise FileNotFoundError(f"语料目录 {corpus_dir} 中没有 *.jsonl 语料文件，无法训练内置模型")
    if not force and is_current(target, files):
        return target
    records = load_corpus(files)
    model = train_model(records, out_dir=None, options=TrainOptions(name="jinshan", cv_folds=5))
    model.metadata["corpus_hash"] = corpus_hash(files)
    model.metadata["corpus_files"] = [f.name for f in files]
    save_model(model, target)
    return target
