"""`hotline route`: plain cases of each bureau's duties (as the seed assigns them) go to that
bureau; local matters with an address go to the right 街镇. Texts written for this test, not
taken from the training corpus."""

from __future__ import annotations

import json

import pytest

from hotline.cli import main

BUREAU_CASES = [
    ("区市场监管局", "在超市买的酸奶已经过了保质期还在卖，吃了以后拉肚子，要求查处这家超市"),
    ("区税务局", "公司申请增值税留抵退税已经两个月了还没有到账，电子税务局一直显示审核中"),
    ("区人社局", "我在一家物流公司上班，老板已经拖欠我们三个月工资不发，一共二十多个工人"),
    ("区经委", "我们是给区里一家事业单位做设备维保的企业，对方拖欠货款一年多一直不付"),
    ("区建管委", "隔壁工地每天晚上十一点以后还在浇筑混凝土施工，噪音太大根本睡不着"),
    ("区生态环境局", "附近化工厂晚上偷偷排放废气，刺鼻的气味很重，怀疑没有开启处理设施"),
    ("区规划资源局", "我们公司的厂房办理不动产权证，土地手续一直办不下来，想咨询规划许可怎么补办"),
    ("区水务局", "我们小区已经停水一整天了，自来水公司没有任何停水通知，水压也一直很低"),
    ("区交通委", "公交车经常不按时刻表发车，站台等了四十分钟都没有车，要求增加班次"),
    ("区数据局", "随申办上办理营业执照变更，提交后页面一直报错无法上传材料，一网通办也进不去"),
    ("区财政局", "我们中标了政府采购项目，合同履约完成半年了，履约保证金一直没有退还"),
    ("区司法局", "家里老人遇到赡养纠纷，经济困难请不起律师，想咨询怎么申请法律援助"),
    ("公安金山分局", "公司财务接到冒充老板的电话被骗转账二十万元，请求立案侦查追回损失"),
    ("金山海关", "我们公司出口的一批货物报关后被海关查验，已经滞留港口一周，想了解通关进度"),
    ("金山供电公司", "厂区今天上午突然停电，没有任何通知，生产线全部停下损失很大"),
    ("天然气公司", "新开的餐馆申请燃气报装接入两个多月了，燃气管道还没有通到店里"),
    ("区人才工作局", "我是去年引进的硕士人才，想咨询人才落户需要哪些材料，人才补贴怎么申请"),
    ("区科委", "公司今年准备申报高新技术企业认定，想咨询研发费用归集和科技项目资助的要求"),
    ("区房管局", "买的商品房合同约定十月交付，开发商一直拖延交房，也不给任何说法"),
    ("区绿化市容局", "我们新开的门店想设置户外广告招牌，想咨询招牌设置需要办理什么审批"),
    ("区发改委", "公司因为一次行政处罚被列入失信记录，处罚已经履行完毕，想申请信用修复"),
    ("区国资委", "区属国有企业拖欠我们民营企业的工程款两年多了，多次催讨一直不给"),
    ("区政务服务中心", "去行政服务中心窗口办事排队三个小时，工作人员态度很差，材料来回让我跑了三趟"),
    ("区投资促进办", "我们是外地企业，准备在金山投资建设新工厂，想对接招商部门了解项目落地政策"),
]

LOCAL_CASES = [
    ("朱泾镇", "小区门口的生活垃圾已经三天没人清运了，臭味很大", "朱泾镇万安街88弄"),
    ("枫泾镇", "楼下沿街店铺占道经营，把货物摆满了人行道，行人只能走机动车道", "枫泾镇枫泾古镇"),
    ("石化街道", "楼上邻居在露台上违法搭建了一间彩钢板房，影响楼下采光", "石化街道卫零路"),
]


def route(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["route", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("unit", "text"), BUREAU_CASES)
def test_plain_cases_go_to_the_bureau(capsys: pytest.CaptureFixture[str], unit: str, text: str) -> None:
    d = route(capsys, text)
    assert d["lead_unit"] == unit, d["candidates"]
    assert not d["manual"]
    assert d["candidates"][0]["unit"] == unit
    assert {"lead_unit", "co_units", "rules", "candidates", "manual"} <= set(d)


@pytest.mark.parametrize(("town", "text", "address"), LOCAL_CASES)
def test_local_matters_go_to_the_town(
    capsys: pytest.CaptureFixture[str], town: str, text: str, address: str
) -> None:
    d = route(capsys, text, "--address", address)
    assert d["lead_unit"] == town
    assert d["territorial_unit"] == town
    assert d["co_units"]  # the line bureau co-handles (协办)


def test_legacy_local_matter_goes_line_first(capsys: pytest.CaptureFixture[str]) -> None:
    d = route(capsys, "小区门口的违法搭建历史遗留多年未解决", "--address", "朱泾镇万安街88弄")
    assert d["line_first"] and d["lead_unit"] != "朱泾镇" and "朱泾镇" in d["co_units"]


def test_human_output_is_chinese_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "公司拖欠工资三个月，联系电话13917652283"]) == 0
    out = capsys.readouterr().out
    assert "派单结果" in out and "13917652283" not in out


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["run"], None, True),  # on by default (the runner still needs fork and a second core)
        (["run"], "0", False),
        (["run", "--classify-ahead"], "0", True),
        (["run", "--no-classify-ahead"], None, False),
    ],
)
def test_run_classifies_ahead_unless_told_not_to(
    argv: list[str], env: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hotline.cli import _classify_ahead, build_parser
    from hotline.settings import Settings

    monkeypatch.delenv("HOTLINE_CLASSIFY_PROCESS", raising=False)
    if env is not None:
        monkeypatch.setenv("HOTLINE_CLASSIFY_PROCESS", env)
    assert _classify_ahead(build_parser().parse_args(argv), Settings()) is expected
