"""Loading rule files: the bundled catalogue, and bad files rejected with file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from routing_rules import JINSHAN_DIR, default_rules_dir, load_default
from routing_rules.config import RuleFileError, load_rules

LINE_UNITS = [
    "区市场监管局", "区税务局", "区人社局", "区经委", "区建管委", "区生态环境局", "区规划资源局",
    "区水务局", "区绿化市容局", "区交通委", "区数据局", "区房管局", "区财政局", "区司法局",
    "公安金山分局", "金山海关", "金山供电公司", "天然气公司", "区发改委", "区投资促进办",
    "区人才工作局", "区科委", "区国资委", "区政务服务中心",
]
TOWNS = {
    "shihua": "石化街道", "zhujing": "朱泾镇", "fengjing": "枫泾镇", "zhangyan": "张堰镇",
    "tinglin": "亭林镇", "lvxiang": "吕巷镇", "langxia": "廊下镇", "jinshanwei": "金山卫镇",
    "caojing": "漕泾镇", "shanyang": "山阳镇", "industrial": "金山工业区",
}


def test_bundled_catalogue_has_every_unit_with_the_agreed_codes() -> None:
    cfg = load_default()
    assert [u.name for u in cfg.line_units] == LINE_UNITS
    assert {u.code: u.name for u in cfg.territorial_units} == TOWNS
    assert cfg.code_of("区市场监管局") == "market" and cfg.code_of("天然气公司") == "gas"
    assert cfg.unit_by_code["industrial"].name == "金山工业区"
    assert {u.name for u in cfg.line_units if u.local_handling} == {"区绿化市容局", "区房管局"}
    for town in cfg.territorial_units:
        assert len(town.places) >= 12, town.name
    with pytest.raises(KeyError):
        cfg.code_of("海口市美兰区政府")


def test_settings_the_lead_relies_on() -> None:
    s = load_default().settings
    assert (s.repeat_min_count, s.repeat_window_days, s.max_returns) == (3, 30, 2)
    assert s.default_threshold == pytest.approx(0.45)


def test_rules_dir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HOTLINE_RULES_DIR", raising=False)
    assert default_rules_dir() == JINSHAN_DIR
    monkeypatch.setenv("HOTLINE_RULES_DIR", str(tmp_path))
    assert default_rules_dir() == tmp_path


# ---- bad files ---------------------------------------------------------------------------------
def _dir_with(tmp_path: Path, *, rules: str | None = None, units: str | None = None,
              abnormal: str | None = None) -> Path:
    shutil.copy(JINSHAN_DIR / "units.yaml", tmp_path / "units.yaml")
    shutil.copy(JINSHAN_DIR / "rules.yaml", tmp_path / "rules.yaml")
    if rules is not None:
        (tmp_path / "rules.yaml").write_text(rules, encoding="utf-8")
    if units is not None:
        (tmp_path / "units.yaml").write_text(units, encoding="utf-8")
    if abnormal is not None:
        (tmp_path / "abnormal.yaml").write_text(abnormal, encoding="utf-8")
    return tmp_path


def _error(directory: Path) -> RuleFileError:
    with pytest.raises(RuleFileError) as info:
        load_rules(directory)
    return info.value


RULE_OK = """settings:
  repeat_min_count: 3
keyword_rules:
  - id: KW-ONE
    any: [停电]
    force_unit: 金山供电公司
"""


def test_a_minimal_rules_file_loads(tmp_path: Path) -> None:
    cfg = load_rules(_dir_with(tmp_path, rules=RULE_OK))
    assert [r.id for r in cfg.keyword_rules] == ["KW-ONE"]
    assert cfg.settings.max_returns == 2


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        # duplicate rule id: reported at the second one
        (RULE_OK + "  - id: KW-ONE\n    any: [断电]\n    force_unit: 金山供电公司\n", 7, "重复的规则编号"),
        # unknown unit name
        (RULE_OK.replace("force_unit: 金山供电公司", "force_unit: 区电力局"), 6, "未知的承办单位"),
        # bad regex
        (RULE_OK.replace("any: [停电]", "pattern: '(停电'"), 5, "正则表达式无效"),
        # wrong type
        (RULE_OK.replace("repeat_min_count: 3", "repeat_min_count: 很多"), 2, "repeat_min_count"),
        # unknown key
        (RULE_OK.replace("    any: [停电]", "    any: [停电]\n    priority: 1"), 6, "未知的键"),
        # duplicate key inside one mapping
        (RULE_OK.replace("    any: [停电]", "    any: [停电]\n    any: [断电]"), 6, "重复的键"),
        # YAML syntax
        (RULE_OK.replace("any: [停电]", "any: [停电"), 6, "YAML 语法错误"),
        # unknown appeal type
        (RULE_OK.replace("    any: [停电]", "    any: [停电]\n    appeal_types: [表扬]"), 6,
         "诉求类型"),
        # a rule with no effect
        ("keyword_rules:\n  - id: KW-NOTHING\n    any: [停电]\n", 2, "没有任何效果"),
        # reusing a built-in rule id
        (RULE_OK.replace("KW-ONE", "RETURN-LIMIT"), 4, "重复的规则编号"),
    ],
)
def test_bad_rules_file_names_file_line_and_reason(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    err = _error(_dir_with(tmp_path, rules=text))
    assert err.file.name == "rules.yaml"
    assert err.line == line, str(err)
    assert words in str(err) and "rules.yaml" in str(err) and f"第 {line} 行" in str(err)


def test_place_name_in_two_towns_is_rejected(tmp_path: Path) -> None:
    units = (JINSHAN_DIR / "units.yaml").read_text(encoding="utf-8")
    units = units.replace("places: [水库村,", "places: [万安街, 水库村,")  # 万安街 is 朱泾镇's
    err = _error(_dir_with(tmp_path, units=units))
    assert err.file.name == "units.yaml" and "万安街" in err.reason
    expected = next(i for i, ln in enumerate(units.splitlines(), 1) if "[万安街, 水库村" in ln)
    assert err.line == expected


def test_duplicate_unit_code_is_rejected(tmp_path: Path) -> None:
    units = (JINSHAN_DIR / "units.yaml").read_text(encoding="utf-8")
    units = units.replace("code: tax", "code: market")
    err = _error(_dir_with(tmp_path, units=units))
    second = [i for i, ln in enumerate(units.splitlines(), 1) if ln == "  - code: market"][1]
    assert err.line == second and "重复的单位代码" in err.reason


def test_bad_abnormal_file(tmp_path: Path) -> None:
    text = "abnormal_complainants:\n  - id: ABN-1\n    reason: 职业索赔\n"
    err = _error(_dir_with(tmp_path, abnormal=text))
    assert err.file.name == "abnormal.yaml" and err.line == 2
    assert "callers" in err.reason


def test_missing_file(tmp_path: Path) -> None:
    shutil.copy(JINSHAN_DIR / "units.yaml", tmp_path / "units.yaml")
    err = _error(tmp_path)
    assert err.file.name == "rules.yaml" and err.line is None and "不存在" in str(err)
