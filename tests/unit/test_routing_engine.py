"""The rule engine: each rule firing and not firing, on the bundled Jinshan config."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from models.records import Candidate, Decision, OrderIn, Prediction, RoutingContext
from routing_rules import JINSHAN_DIR, load_default
from routing_rules.config import RoutingConfig, load_rules
from routing_rules.engine import RoutingEngine

CFG = load_default()
ENGINE = RoutingEngine(CFG)


def order(text: str, *, title: str = "", address: str | None = None, **kw: object) -> OrderIn:
    return OrderIn(
        order_id=str(kw.pop("order_id", "GD-1")),
        channel=str(kw.pop("channel", "12345热线")),
        received_at=datetime(2024, 5, 6, 9, 30),
        title=title,
        text=text,
        address=address,
        **kw,  # type: ignore[arg-type]
    )


def pred(*pairs: tuple[str, float], terms: tuple[tuple[str, float], ...] = ()) -> Prediction:
    return Prediction(
        candidates=tuple(Candidate(u, p) for u, p in pairs),
        model_version="test-1",
        appeal_type="投诉",
        appeal_type_probability=0.9,
        terms=terms,
    )


def decide(o: OrderIn, p: Prediction, ctx: RoutingContext | None = None, **kw: object) -> Decision:
    return ENGINE.decide(o, p, ctx or RoutingContext(), **kw)  # type: ignore[arg-type]


GARBAGE = order("小区门口生活垃圾堆了三天没人清运，臭味很大", address="朱泾镇万安街88弄")
GARBAGE_P = pred(("区绿化市容局", 0.81), ("区房管局", 0.1), ("区生态环境局", 0.05), ("区水务局", 0.04))


# ---- local matters: 属地为主 -------------------------------------------------------------------
def test_local_matter_with_address_goes_to_the_town_with_the_bureau_co_handling() -> None:
    d = decide(GARBAGE, GARBAGE_P)
    assert (d.lead_unit, d.co_units, d.manual) == ("朱泾镇", ("区绿化市容局",), False)
    assert d.territorial_unit == "朱泾镇" and d.line_unit == "区绿化市容局"
    assert "LOCAL-TERRITORIAL" in d.rules and "LOCAL-GARBAGE" in d.rules
    assert not d.line_first and d.trigger is None
    assert any("朱泾镇 主办" in r for r in d.reasons)


def test_local_matter_without_any_place_goes_to_the_bureau() -> None:
    d = decide(order("小区门口生活垃圾堆了三天没人清运"), GARBAGE_P)
    assert (d.lead_unit, d.co_units) == ("区绿化市容局", ())
    assert "LOCAL-NO-AREA" in d.rules and d.territorial_unit is None


def test_bureau_with_local_handling_is_local_even_without_a_local_keyword() -> None:
    o = order("楼道灯坏了一个月，报修没有人来", address="石化街道蒙山路")
    d = decide(o, pred(("区房管局", 0.7), ("区交通委", 0.2)))
    assert (d.lead_unit, d.co_units) == ("石化街道", ("区房管局",))


def test_line_keyword_makes_a_noisy_construction_site_a_line_matter() -> None:
    o = order("旁边工地夜间施工噪音扰民，凌晨两点还在打桩", address="山阳镇龙皓路")
    d = decide(o, pred(("区建管委", 0.77), ("区生态环境局", 0.2)))
    assert d.lead_unit == "区建管委"
    assert d.co_units == ("山阳镇",)  # 区建管委 has territorial_co
    assert "TERRITORIAL-CO" in d.rules and "LOCAL-TERRITORIAL" not in d.rules


# ---- non-local matters: 条线 ----------------------------------------------------------------
def test_non_local_matter_goes_to_the_bureau_without_the_town_unless_configured() -> None:
    o = order("申请留抵退税材料已提交两个月没有结果", address="金山工业区夏宁路818号",
              is_enterprise=True, enterprise_name="上海某材料有限公司")
    d = decide(o, pred(("区税务局", 0.88), ("区财政局", 0.07)))
    assert (d.lead_unit, d.co_units, d.manual) == ("区税务局", (), False)
    assert d.territorial_unit == "金山工业区" and not d.line_first


def test_non_local_matter_adds_the_town_when_the_bureau_says_so() -> None:
    o = order("公司拖欠三名员工两个月工资", address="枫泾镇新义村")
    d = decide(o, pred(("区人社局", 0.9)))
    assert (d.lead_unit, d.co_units) == ("区人社局", ("枫泾镇",))


# ---- 条线部门为主 triggers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ctx", "trigger", "rule"),
    [
        (RoutingContext(repeat_count=3), "repeat", "LINE-FIRST-REPEAT"),
        (RoutingContext(repeat_count=5), "repeat", "LINE-FIRST-REPEAT"),
        (RoutingContext(returned_by=("朱泾镇",), beyond_power=True), "beyond_power",
         "LINE-FIRST-BEYOND-POWER"),
        (RoutingContext(reopened_with_territorial=True), "reopened", "LINE-FIRST-REOPENED"),
    ],
)
def test_line_first_triggers_put_the_bureau_in_the_lead_and_the_town_as_co(
    ctx: RoutingContext, trigger: str, rule: str
) -> None:
    d = decide(GARBAGE, GARBAGE_P, ctx)
    assert (d.lead_unit, d.co_units) == ("区绿化市容局", ("朱泾镇",))
    assert d.line_first and d.trigger == trigger and rule in d.rules
    assert any("条线部门为主" in r for r in d.reasons)


def test_repeat_below_n_stays_territorial() -> None:
    assert CFG.settings.repeat_min_count == 3
    d = decide(GARBAGE, GARBAGE_P, RoutingContext(repeat_count=2))
    assert d.lead_unit == "朱泾镇" and not d.line_first


def test_legacy_by_flag_and_by_keyword() -> None:
    flagged = order(GARBAGE.text, address=GARBAGE.address, legacy=True)
    worded = order("这个小区的建筑垃圾堆放是历史遗留问题，多年未解决", address="朱泾镇万安街")
    for o in (flagged, worded):
        d = decide(o, GARBAGE_P)
        assert (d.lead_unit, d.co_units, d.trigger) == ("区绿化市容局", ("朱泾镇",), "legacy")
        assert "LINE-FIRST-LEGACY" in d.rules


def test_no_trigger_means_no_line_first() -> None:
    d = decide(GARBAGE, GARBAGE_P, RoutingContext(repeat_count=1))
    assert not d.line_first and "LINE-FIRST-LEGACY" not in d.rules


# ---- thresholds → manual -------------------------------------------------------------------
def test_below_threshold_goes_to_manual_with_top_three() -> None:
    o = order("想咨询一下公司相关的事情怎么办", address="亭林镇油车村")
    p = pred(("区发改委", 0.30), ("区经委", 0.25), ("区投资促进办", 0.2), ("区科委", 0.1))
    d = decide(o, p)
    assert d.manual and d.lead_unit is None and d.co_units == ()
    assert [c.unit for c in d.candidates] == ["区发改委", "区经委", "区投资促进办"]
    assert d.rules[0] == "LOW-CONFIDENCE" and d.territorial_unit == "亭林镇"


def test_per_unit_override_and_model_thresholds() -> None:
    o = order("公司想了解产业扶持政策怎么申请")
    p = pred(("区经委", 0.5), ("区发改委", 0.3))
    assert CFG.settings.unit_thresholds["区经委"] == 0.55
    assert not CFG.settings.thresholds_from_model  # shipped: config thresholds (bundled model is small)
    assert decide(o, p, model_thresholds={"区经委": 0.4}).manual  # model thresholds not asked for
    model_cfg = dataclasses.replace(
        CFG, settings=CFG.settings.model_copy(update={"threshold_source": "model"})
    )
    engine = RoutingEngine(model_cfg)
    assert not engine.decide(o, p, RoutingContext(), model_thresholds={"区经委": 0.4}).manual
    # keyed by code works too
    assert engine.decide(o, p, RoutingContext(), model_thresholds={"economy": 0.6}).manual


def test_low_confidence_local_matter_uses_the_local_keyword_bureau() -> None:
    p = pred(("区市场监管局", 0.3), ("区绿化市容局", 0.28))
    d = decide(GARBAGE, p)
    assert (d.lead_unit, d.co_units, d.manual) == ("朱泾镇", ("区绿化市容局",), False)
    assert "LOCAL-GARBAGE" in d.rules


# ---- keyword rules ---------------------------------------------------------------------------
def test_gas_leak_rule_forces_the_gas_company_and_is_urgent() -> None:
    o = order("饭店后厨闻到燃气味很重，担心燃气泄漏", address="石化街道卫零路")
    d = decide(o, pred(("区市场监管局", 0.6), ("天然气公司", 0.3)))
    assert d.lead_unit == "天然气公司" and not d.manual
    assert d.rules[0] == "KW-GAS-LEAK" and ENGINE.is_urgent(d)
    assert d.reasons[0].startswith("【紧急】")


def test_keyword_rule_does_not_fire_on_an_excluded_word() -> None:
    o = order("电费发票开错了抬头，要求重开", title="电费发票问题")
    d = decide(o, pred(("区税务局", 0.7), ("金山供电公司", 0.2)))
    assert "KW-POWER-OUTAGE" not in d.rules and d.lead_unit == "区税务局"


def test_keyword_rule_with_all_and_pattern() -> None:
    o = order("镇政府拖欠我司工程款180万元已两年", address="张堰镇秦望村")
    d = decide(o, pred(("区财政局", 0.4)))
    assert d.lead_unit == "区经委" and "KW-GOV-ARREARS" in d.rules
    o2 = order("镇政府拖欠我司的合同一直没签")  # no 款 word: the pattern does not match
    assert "KW-GOV-ARREARS" not in decide(o2, pred(("区司法局", 0.6))).rules


def test_manual_keyword_rule_wins_over_a_confident_model() -> None:
    o = order("厂房着火了，有人被困", address="金山工业区林慧路")
    d = decide(o, pred(("区建管委", 0.95)))
    assert d.manual and d.lead_unit is None and d.rules[0] == "KW-SAFETY-EMERGENCY"
    assert ENGINE.is_urgent(d)


# ---- 退单 re-route -------------------------------------------------------------------------
def test_reroute_never_goes_back_to_a_returned_unit() -> None:
    o = order("开发区企业排水接管许可办理进度咨询", address="漕泾镇阮巷村")
    p = pred(("区水务局", 0.6), ("区建管委", 0.3), ("区规划资源局", 0.1))
    d = ENGINE.decide(o, p, RoutingContext(returned_by=("区水务局",)))
    assert d.lead_unit == "区建管委" and "区水务局" not in d.co_units
    assert all(c.unit != "区水务局" for c in d.candidates)
    assert "REROUTE" in d.rules


def test_reroute_when_the_town_returned_a_local_matter() -> None:
    d = decide(GARBAGE, GARBAGE_P, RoutingContext(returned_by=("朱泾镇",)))
    assert (d.lead_unit, d.co_units) == ("区绿化市容局", ())
    assert "TERRITORIAL-RETURNED" in d.rules


def test_forced_unit_that_returned_the_order_is_skipped() -> None:
    o = order("园区突然停电，生产线全部停了", address="金山工业区夏宁路")
    d = decide(o, pred(("区经委", 0.7)), RoutingContext(returned_by=("金山供电公司",)))
    assert d.lead_unit == "区经委" and "RULE-UNIT-RETURNED" in d.rules


def test_two_returns_go_to_the_dispatcher() -> None:
    ctx = RoutingContext(returned_by=("区水务局", "区建管委"))
    d = decide(GARBAGE, GARBAGE_P, ctx)
    assert d.manual and d.lead_unit is None and d.rules[0] == "RETURN-LIMIT"
    one = decide(GARBAGE, GARBAGE_P, RoutingContext(returned_by=("区水务局",)))
    assert not one.manual


# ---- audit trail -----------------------------------------------------------------------------
def test_decision_records_model_version_candidates_and_terms() -> None:
    p = pred(("区绿化市容局", 0.81), ("区房管局", 0.1), terms=(("垃圾", 1.2), ("清运", 0.8)))
    d = decide(GARBAGE, p)
    assert d.model_version == "test-1" and d.terms == (("垃圾", 1.2), ("清运", 0.8))
    assert d.confidence == pytest.approx(0.81) and d.appeal_type == "投诉"
    assert any("垃圾" in r for r in d.reasons)
    assert d.to_json()["lead_unit"] == "朱泾镇"


def test_candidates_given_by_code_are_named_and_unknown_units_dropped() -> None:
    d = decide(GARBAGE, pred(("greening", 0.8), ("海口市美兰区政府", 0.1)))
    assert [c.unit for c in d.candidates] == ["区绿化市容局"]


# ---- rules from an operator's own files --------------------------------------------------------
def _own_rules(tmp_path: Path, rules_extra: str, abnormal: str | None = None) -> RoutingConfig:
    shutil.copy(JINSHAN_DIR / "units.yaml", tmp_path / "units.yaml")
    base = (JINSHAN_DIR / "rules.yaml").read_text(encoding="utf-8")
    base = base.replace("enterprise_rules: []", rules_extra)
    (tmp_path / "rules.yaml").write_text(base, encoding="utf-8")
    if abnormal is not None:
        (tmp_path / "abnormal.yaml").write_text(abnormal, encoding="utf-8")
    return load_rules(tmp_path)


ENTERPRISE_RULES = """enterprise_rules:
  - id: ENT-SERVICE-PACK
    description: 重点企业服务包
    enterprises:
      - name: 上海金山示例新材料有限公司
      - credit_code: 91310116MA1H4L7Q2N
    force_unit: 区投资促进办
    co_units: [economy]
"""


def test_enterprise_rule_fires_by_name_or_credit_code(tmp_path: Path) -> None:
    engine = RoutingEngine(_own_rules(tmp_path, ENTERPRISE_RULES))
    p = pred(("区规划资源局", 0.7))
    by_name = order("项目用地规划许可办理卡住了", enterprise_name="上海金山示例新材料有限公司")
    by_code = order("项目用地规划许可办理卡住了", credit_code="91310116ma1h4l7q2n")
    for o in (by_name, by_code):
        d = engine.decide(o, p, RoutingContext())
        assert (d.lead_unit, d.co_units) == ("区投资促进办", ("区经委",))
        assert d.rules[0] == "ENT-SERVICE-PACK"
    other = engine.decide(order("项目用地规划许可", enterprise_name="别的公司"), p, RoutingContext())
    assert other.lead_unit == "区规划资源局" and "ENT-SERVICE-PACK" not in other.rules


ABNORMAL = """abnormal_complainants:
  - id: ABN-2024-001
    callers: ["13812345678"]
    enterprises: [上海某某商贸有限公司]
    reason: 以食品标签瑕疵批量索赔
"""


def test_abnormal_complainant_goes_to_market_review_and_beats_every_rule(tmp_path: Path) -> None:
    engine = RoutingEngine(_own_rules(tmp_path, ENTERPRISE_RULES, ABNORMAL))
    o = order("超市售卖过期食品，燃气泄漏", caller="138-1234-5678",
              enterprise_name="上海金山示例新材料有限公司")
    d = engine.decide(o, pred(("区市场监管局", 0.95)), RoutingContext())
    assert d.manual and d.lead_unit is None
    assert d.rules[:2] == ("ABN-2024-001", "ABNORMAL-LIST")
    assert d.line_unit == "区市场监管局"
    assert any("异常名录" in r for r in d.reasons)
    clean = engine.decide(order("超市售卖过期食品", caller="13900000000"),
                          pred(("区市场监管局", 0.95)), RoutingContext())
    assert not clean.manual and "ABNORMAL-LIST" not in clean.rules


# ---- text facts found elsewhere (the classifier's helper process) ------------------------------
def _corpus_orders() -> list[OrderIn]:
    from ops.bench.workload import corpus_templates
    from streams.intake import normalize

    return [normalize({**t, "order_id": f"C{i}", "received_at": "2024-05-06T09:30:00"},
                      max_text_chars=5000)
            for i, t in enumerate(corpus_templates())]


def test_decisions_are_the_same_with_the_text_facts_found_beforehand(tmp_path: Path) -> None:
    engine = RoutingEngine(_own_rules(tmp_path, ENTERPRISE_RULES))
    units = [u.name for u in engine.cfg.units]
    orders = [*_corpus_orders(), GARBAGE,
              order("项目用地规划许可办理卡住了", enterprise_name="上海金山示例新材料有限公司")]
    found = {"territorial": 0, "keyword_hits": 0, "enterprise_hits": 0, "local_hit": 0,
             "line_keyword": 0, "legacy_keyword": 0}
    for i, o in enumerate(orders):
        p = pred((units[i % len(units)], 0.5 + (i % 5) / 10), (units[(i + 3) % len(units)], 0.1))
        facts = engine.text_facts(o)
        for name in found:
            found[name] += bool(getattr(facts, name) not in (None, ()))
        for ctx in (RoutingContext(), RoutingContext(repeat_count=5),
                    RoutingContext(returned_by=(units[i % len(units)],))):
            assert engine.decide(o, dataclasses.replace(p, rule_facts=facts), ctx) == \
                engine.decide(o, p, ctx), o.order_id
    # the orders exercise every kind of finding, so the comparison covers each
    assert all(found.values()), found


def test_text_facts_are_used_only_when_this_engine_found_them() -> None:
    no_place = order("小区门口生活垃圾堆了三天没人清运")
    elsewhere = ENGINE.text_facts(GARBAGE)  # its 街镇 is 朱泾镇
    assert elsewhere.territorial == "朱泾镇" and ENGINE.text_facts(no_place).territorial is None
    used = ENGINE.decide(no_place, dataclasses.replace(GARBAGE_P, rule_facts=elsewhere),
                         RoutingContext())
    assert used.lead_unit == "朱泾镇"  # the facts given are the facts used
    other = RoutingEngine(CFG)  # same rules, another engine: its facts are found again
    d = other.decide(no_place, dataclasses.replace(GARBAGE_P, rule_facts=elsewhere),
                     RoutingContext())
    assert d == other.decide(no_place, GARBAGE_P, RoutingContext())
    assert d.lead_unit == "区绿化市容局" and "LOCAL-NO-AREA" in d.rules
    # not part of what the model proposes: a prediction compares equal with or without them
    assert dataclasses.replace(GARBAGE_P, rule_facts=elsewhere) == GARBAGE_P
