"""The bundled model is (re)built only when missing or stale, from a corpus of JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

from classifier.bundled import ensure_bundled_model, is_current, is_held_out
from classifier.model import load_model

_CORPUS = {
    "tax": ("区税务局", ["发票开具失败", "留抵退税未到账", "纳税申报逾期", "税务注销材料", "增值税申报表", "发票额度不足"]),
    "hr": ("区人社局", ["拖欠工资三个月", "欠薪讨薪", "劳动合同纠纷", "工伤认定", "稳岗补贴发放", "社保待遇"]),
}


def _write_corpus(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for code, (unit, texts) in _CORPUS.items():
        lines = [
            json.dumps({"id": f"{code}-{i}", "unit": unit, "line_unit": unit, "title": "",
                        "text": t, "appeal_type": "投诉", "area": "朱泾镇"}, ensure_ascii=False)
            for i, t in enumerate(texts)
        ]
        (d / f"{code}.jsonl").write_text("\n".join(lines) + "\n", "utf-8")


def test_ensure_bundled_model_builds_once_and_rebuilds_on_change(tmp_path: Path) -> None:
    corpus, out = tmp_path / "corpus", tmp_path / "bundled"
    _write_corpus(corpus)
    path = ensure_bundled_model(corpus_dir=corpus, model_dir=out)
    model = load_model(path)
    assert set(model.labels) == {"区税务局", "区人社局"}
    assert model.version.startswith("jinshan-")
    stamp = (out / "metadata.json").stat().st_mtime_ns
    assert ensure_bundled_model(corpus_dir=corpus, model_dir=out) == out
    assert (out / "metadata.json").stat().st_mtime_ns == stamp  # current: not retrained
    with (corpus / "tax.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "tax-x", "line_unit": "区税务局", "text": "开票系统故障"},
                            ensure_ascii=False) + "\n")
    assert not is_current(out, sorted(corpus.glob("*.jsonl")))
    ensure_bundled_model(corpus_dir=corpus, model_dir=out)
    # the corpus has 13 records; ids ending in a multiple of 4 are held out for the sample day
    expected = sum(1 for f in corpus.glob("*.jsonl") for line in f.read_text("utf-8").splitlines()
                   if not is_held_out(json.loads(line)["id"]))
    assert load_model(out).metadata["n_train"] == expected == 9
