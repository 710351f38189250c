"""Unit tests of the classifier package: tokenizer, hint stripping, loaders, training,
save/load, version checks, evaluation metrics and the CLI."""

from __future__ import annotations

import argparse
import csv
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from classifier.cli import PREDICT_COLUMNS, register
from classifier.datasets import (
    DatasetError,
    LabeledText,
    load_dataset,
    map_appeal_type,
    strip_dispatch_hints,
)
from classifier.evaluate import (
    evaluate,
    expected_calibration_error,
    format_report,
    unit_report,
)
from classifier.model import (
    METADATA_FILE,
    ModelLoadError,
    ModelVersionMismatch,
    TrainOptions,
    load_model,
    train_model,
)
from classifier.tokenize import tokenize
from models.records import OrderIn

HAIKOU = Path("/work/shared/data/haikou12345/workorders.csv")

_TEXTS = {
    "区税务局": [
        "增值税专用发票开具失败，税控盘报错",
        "留抵退税申请提交后一直没有到账",
        "企业所得税汇算清缴申报表怎么填写",
        "电子税务局无法登录，纳税申报逾期",
        "发票领用数量不够，申请增加发票额度",
        "社保费缴纳基数如何调整，税务系统咨询",
        "税务注销需要哪些材料，清税证明",
        "纳税信用等级被评为D级，申请修复",
    ],
    "区人社局": [
        "公司拖欠工资三个月，工人讨薪无果",
        "欠薪问题，老板跑路，要求劳动监察介入",
        "劳动合同到期不续签，要求经济补偿",
        "工伤认定申请材料如何准备",
        "稳岗补贴什么时候发放到企业账户",
        "职业技能培训补贴申请流程",
        "员工社保待遇领取，退休金核定",
        "用工招聘会报名，就业补贴咨询",
    ],
    "区绿化市容局": [
        "小区门口生活垃圾堆放多日无人清运",
        "建筑垃圾乱倒在路边，影响市容",
        "行道树枝叶遮挡路灯，请修剪",
        "商铺违规设置户外广告招牌",
        "沿街店铺外摆位占用人行道",
        "绿化带被毁，树木被砍伐",
        "占道经营的摊贩影响通行",
        "垃圾箱房异味严重，清运不及时",
    ],
}


def _records() -> list[LabeledText]:
    out = []
    types = ["投诉", "咨询"]
    for unit, texts in _TEXTS.items():
        for i, text in enumerate(texts):
            out.append(
                LabeledText(
                    order_id=f"{unit}-{i}", text=text, unit=unit, appeal_type=types[i % 2]
                )
            )
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("model") / "m"
    model = train_model(_records(), out_dir=out, options=TrainOptions(name="test", cv_folds=3))
    return out, model


# --- tokenizer ------------------------------------------------------------------------------


def test_tokenize_keeps_district_terms_and_drops_punctuation() -> None:
    tokens = tokenize("金山工业区企业反映：欠薪三个月！随申办办理留抵退税，统一社会信用代码有误。")
    for term in ("金山工业区", "欠薪", "随申办", "留抵退税", "统一社会信用代码"):
        assert term in tokens
    assert not any(re.fullmatch(r"[\W_]+", t) for t in tokens)
    assert tokenize("") == []


# --- hint stripping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, kept, gone",
    [
        (
            "市民来电反映:小区门口道路破损。请美兰区政府核实处理！（请职能局按规定在30分钟内联系市民，响应处置）",
            "小区门口道路破损",
            ["美兰区政府", "响应处置", "30分钟"],
        ),
        (
            "市民来电反映:路口有车辆违停，请交警核实处理！（请职能部门按规定在30分钟内核实处理，响应处置）",
            "路口有车辆违停",
            ["交警", "核实处理"],
        ),
        ("市民来电咨询:交警APP名称的问题，请职能局给予核实回复！", "交警APP名称的问题", ["职能局"]),
        ("有人聚众赌博，请市公安局核实处理。（30分钟办件！）", "有人聚众赌博", ["公安局", "办件"]),
    ],
)
def test_strip_dispatch_hints_removes_hints_keeps_complaint(
    raw: str, kept: str, gone: list[str]
) -> None:
    out = strip_dispatch_hints(raw)
    assert kept in out
    for g in gone:
        assert g not in out


def test_strip_dispatch_hints_keeps_citizen_requests() -> None:
    text = "其申请退款处理被拒绝。请问如何维权？请求政府协调解决。候车等了30分钟。"
    assert strip_dispatch_hints(text) == text


@pytest.mark.skipif(not HAIKOU.exists(), reason="Haikou data not available")
def test_strip_dispatch_hints_on_real_haikou_orders() -> None:
    with HAIKOU.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    hint = re.compile(r"请(?:交警|城管|交通局|公安局|职能局|[美龙秀琼]\w{1,2}区政府)核实处理|响应处置")
    raw_with_hint = [r["诉求内容"] for r in rows if hint.search(r["诉求内容"])]
    assert len(raw_with_hint) > 500
    stripped = [strip_dispatch_hints(t) for t in raw_with_hint]
    leftover = sum(1 for t in stripped if hint.search(t))
    assert leftover <= len(raw_with_hint) * 0.01
    # the complaint itself survives: the opening words are kept and only short hints go
    opening = [t[:15] for t in raw_with_hint]
    assert sum(1 for o, s in zip(opening, stripped) if s.startswith(o.strip())) > 0.97 * len(
        stripped
    )
    removed = sorted(len(t) - len(s) for t, s in zip(raw_with_hint, stripped))
    assert removed[len(removed) // 2] < 60


def test_map_appeal_type() -> None:
    assert map_appeal_type("咨询类") == "咨询"
    assert map_appeal_type("紧急类") == "求助"
    assert map_appeal_type("反馈类") is None
    assert map_appeal_type("举报") == "举报"
    assert map_appeal_type("") is None


# --- loaders --------------------------------------------------------------------------------


def test_load_csv_and_missing_column(tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        "id,title,text,unit,诉求类型\n1,标题,欠薪请区人社局核实处理。,区人社局,投诉类\n2,,x,其他单位,\n",
        encoding="utf-8",
    )
    recs = load_dataset(good, "csv")
    assert [r.unit for r in recs] == ["区人社局"]
    assert recs[0].text == "标题\n欠薪" and recs[0].appeal_type == "投诉"
    assert len(load_dataset(good, "csv", drop_catchall=False)) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,欠薪\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="第 2 行缺少列"):
        load_dataset(bad, "csv")
    with pytest.raises(DatasetError, match="无法读取"):
        load_dataset(tmp_path / "nope.csv", "csv")


def test_load_jsonl_uses_line_unit(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    rows = [
        {"id": "a", "unit": "朱泾镇", "line_unit": "区绿化市容局", "title": "垃圾", "text": "堆放",
         "area": "朱泾镇", "address": "朱泾镇某路", "appeal_type": "投诉"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    (rec,) = load_dataset(path, "jsonl")
    assert rec.unit == "区绿化市容局" and rec.area == "朱泾镇" and rec.extra["unit"] == "朱泾镇"
    path.write_text("{not json}\n", "utf-8")
    with pytest.raises(DatasetError, match="第 1 行"):
        load_dataset(path, "jsonl")


# --- training, save/load, prediction ----------------------------------------------------------


def test_train_predict_explain(trained: tuple[Path, object]) -> None:
    _, model = trained
    order = OrderIn(
        order_id="x1", channel="CLI", received_at=datetime(2026, 1, 5), title="欠薪",
        text="公司拖欠工资两个月，老板不接电话",
    )
    (pred,) = model.predict([order])
    assert pred.top.unit == "区人社局"
    probs = [c.probability for c in pred.candidates]
    assert probs == sorted(probs, reverse=True) and len(probs) == 3
    assert sum(c.probability for c in pred.candidates) == pytest.approx(1.0, abs=0.05)
    assert pred.model_version.startswith("test-")
    assert pred.appeal_type in ("投诉", "咨询")
    assert pred.terms and all(w > 0 for _, w in pred.terms)
    assert any(t in ("拖欠工资", "工资", "拖欠") for t, _ in pred.terms)
    assert isinstance(model.auto_ok(pred), bool)
    assert set(model.thresholds) == set(model.labels)


def test_thresholds_from_cross_validation_aim_above_the_target(
    trained: tuple[Path, object],
) -> None:
    """Cross-validated thresholds aim at the target plus the margin (fold models are less
    confident than the final one); validation-chosen ones at the target itself."""
    _, model = trained
    assert model.metadata["target_precision"] == 0.95
    assert model.metadata["threshold_precision"] == pytest.approx(0.96)
    records = _records()
    held_out = records[::4]
    on_val = train_model(
        [r for r in records if r not in held_out], out_dir=None,
        options=TrainOptions(name="test", cv_folds=0), validation=held_out,
    )  # fmt: skip
    assert on_val.metadata["threshold_precision"] == pytest.approx(0.95)
    assert on_val.metadata["validation"]["source"] == "validation"


def test_save_load_round_trip_identical(trained: tuple[Path, object]) -> None:
    path, model = trained
    loaded = load_model(path)
    texts = ["发票开具失败", "垃圾清运不及时", "工资没发"]
    a = model.predict_texts(texts)
    b = loaded.predict_texts(texts)
    assert a == b
    assert loaded.version == model.version and loaded.thresholds == model.thresholds
    meta = json.loads((path / METADATA_FILE).read_text("utf-8"))
    assert re.fullmatch(r"test-\d{8}-[0-9a-f]{8}", meta["model_version"])
    for lib in ("python", "sklearn", "numpy", "scipy", "jieba"):
        assert lib in meta["libraries"]
    assert meta["train_counts"]["区税务局"] == 8 and "accuracy" in meta["validation"]


def test_load_refuses_version_mismatch_and_corruption(
    trained: tuple[Path, object], tmp_path: Path
) -> None:
    path, _ = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in path.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    meta = json.loads((copy / METADATA_FILE).read_text("utf-8"))
    meta["libraries"]["sklearn"] = "0.24.2"
    (copy / METADATA_FILE).write_text(json.dumps(meta), "utf-8")
    with pytest.raises(ModelVersionMismatch, match="sklearn 训练时为 0.24.2"):
        load_model(copy)
    with pytest.raises(ModelLoadError, match="缺少"):
        load_model(tmp_path / "missing")
    (copy / METADATA_FILE).write_text(json.dumps({**meta, "libraries": json.loads(
        (path / METADATA_FILE).read_text("utf-8"))["libraries"]}), "utf-8")
    (copy / "model.joblib").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="已损坏"):
        load_model(copy)


# --- evaluation -----------------------------------------------------------------------------


def test_unit_report_hand_computed() -> None:
    labels = np.array(["A", "B"])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.7, 0.3]])
    y = np.array(["A", "A", "B", "B"])  # preds A, A, B, A: 3 of 4 right
    r = unit_report(proba, y, labels, {"A": 0.75, "B": 0.5})
    assert r["accuracy"] == 0.75
    # descending confidence 0.9 ok, 0.8 ok, 0.7 wrong, 0.6 ok -> precision 1,1,2/3,3/4
    assert r["coverage"]["0.90"] == 0.5 and r["coverage"]["0.97"] == 0.5
    # auto: A@0.9, A@0.8 (>=0.75), B@0.6 (>=0.5); A@0.7 < 0.75 manual
    assert r["auto_rate"] == 0.75 and r["auto_precision"] == 1.0
    assert r["per_unit"]["A"] == {"precision": 2 / 3, "recall": 1.0, "support": 2, "predicted": 3}
    assert r["per_unit"]["B"]["recall"] == 0.5
    assert r["confused"] == [{"true": "B", "predicted": "A", "count": 1}]
    # macro-F1: A f1 = 0.8, B f1 = 2/3
    assert r["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_unit_report_by_history_bands() -> None:
    labels = np.array(["A", "B", "C"])
    # true A, A, B, C, D; predicted A, B, B, A, A: A 1 of 2, B right, C wrong, D (unseen) wrong
    proba = np.array(
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.6, 0.3, 0.1]]
    )
    y = np.array(["A", "A", "B", "C", "D"])
    r = unit_report(proba, y, labels, {}, {"A": 40, "B": 5, "C": 1})
    bands = {b["band"]: b for b in r["by_history"]}
    assert list(bands) == ["0", "1-2", "3-9", "10-29", "30+"]
    assert bands["0"]["n"] == 1 and bands["0"]["accuracy"] == 0.0
    assert bands["1-2"]["n"] == 1 and bands["1-2"]["top3_accuracy"] == 1.0  # C is second
    assert bands["3-9"]["accuracy"] == 1.0 and bands["3-9"]["error_share"] == 0.0
    assert bands["10-29"] == {
        "band": "10-29", "n": 0, "share": 0.0, "accuracy": 0.0, "top3_accuracy": 0.0,
        "error_share": 0.0,
    }  # fmt: skip
    assert bands["30+"]["n"] == 2 and bands["30+"]["accuracy"] == 0.5
    # errors: A→B, C→A, D→A; each band's share of them
    assert [bands[b]["error_share"] for b in ("0", "1-2", "30+")] == [1 / 3, 1 / 3, 1 / 3]
    assert sum(b["share"] for b in r["by_history"]) == pytest.approx(1.0)
    assert "by_history" not in unit_report(proba, y, labels, {})
    text = format_report({**r, "appeal_type": None}).splitlines()
    assert "  训练   1-2 单的单位：    1 单（20.0%），准确率 0.000，前三命中率 1.000，占全部错误 33.3%" in text
    assert "  训练 10-29 单的单位：    0 单" in text  # an empty band has no figures


def test_expected_calibration_error() -> None:
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1.0, 1.0, 1.0, 0.0])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)


def test_evaluate_counts_unseen_units(trained: tuple[Path, object]) -> None:
    _, model = trained
    recs = _records()[:3] + [LabeledText(order_id="u", text="码头轮渡停航", unit="海事局")]
    r = evaluate(model, recs)
    assert r["n"] == 4 and r["unseen_labels"] == ["海事局"] and r["n_unseen"] == 1
    assert r["by_history"][0]["band"] == "0" and r["by_history"][0]["n"] == 1  # 海事局
    assert sum(b["n"] for b in r["by_history"]) == 4
    assert r["appeal_type"]["available"] and r["appeal_type"]["n"] == 3


# --- CLI ------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_train_evaluate_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.csv"
    with data.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["工单编号", "诉求内容", "处置单位", "诉求类型"])
        for r in _records():
            w.writerow([r.order_id, r.text, r.unit, r.appeal_type])
    out = tmp_path / "model"
    assert _cli(["train", "--data", str(data), "--format", "csv", "--out", str(out)]) == 0
    assert _cli(["evaluate", "--model", str(out), "--data", str(data), "--format", "csv"]) == 0
    assert "准确率" in capsys.readouterr().out
    assert _cli(["evaluate", "--model", str(out), "--data", str(data), "--format", "csv", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 24
    pred = tmp_path / "p.csv"
    assert _cli(["predict", "--model", str(out), "--data", str(data), "--format", "csv",
                 "--out", str(pred)]) == 0
    with pred.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == PREDICT_COLUMNS and len(rows) == 25
    assert rows[1][3] in ("true", "false") and 0 <= float(rows[1][2]) <= 1
    assert _cli(["evaluate", "--model", str(tmp_path / "none"), "--data", str(data)]) == 2
