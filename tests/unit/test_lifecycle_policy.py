"""Loading the lifecycle policy: the shipped file is valid; bad files fail naming file and key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from models.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy


def test_shipped_policy_loads_with_2025_and_2026_calendars() -> None:
    policy = load_policy(DEFAULT_POLICY_PATH)
    assert policy.supervise_after_reopens == 2 and policy.dispatcher_after_returns == 2
    assert date(2025, 1, 29) in policy.holidays and date(2026, 10, 7) in policy.holidays
    assert date(2025, 2, 8) in policy.makeup_workdays
    assert policy.deadline_days("举报", False, "办结") == 15
    assert policy.deadline_days(None, False, "办结") == policy.deadline_days("投诉", False, "办结")
    assert policy.deadline_days("咨询", True, "回访") == 1


def _bad(tmp_path: Path, old: str, new: str) -> str:
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "lifecycle.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_non_integer_days_name_the_key_and_line(tmp_path: Path) -> None:
    message = _bad(tmp_path, "normal: {accept: 1, handle: 3, revisit: 2}",
                   "normal: {accept: 1, handle: three, revisit: 2}")
    assert "deadlines.咨询.normal.handle" in message
    rows = (tmp_path / "lifecycle.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, row in enumerate(rows, 1) if "three" in row)
    assert f"lifecycle.yaml:{line}:" in message


def test_unknown_appeal_type_and_missing_urgency(tmp_path: Path) -> None:
    assert "deadlines.求援: 未知诉求类型" in _bad(tmp_path, "  求助:\n", "  求援:\n")
    message = _bad(tmp_path, "    urgent: {accept: 1, handle: 1, revisit: 1}\n", "")
    assert "deadlines.咨询" in message and "urgent" in message


def test_makeup_day_on_a_weekday_is_refused(tmp_path: Path) -> None:
    message = _bad(tmp_path, "date: 2025-01-26}", "date: 2025-01-27}")
    assert "makeup_workdays.0.date" in message and "不是周末" in message


def test_bad_dates_and_unknown_keys(tmp_path: Path) -> None:
    assert "holidays.0.from" in _bad(tmp_path, "from: 2025-01-01", "from: 2025-13-01")
    assert "reopen_limit" in _bad(tmp_path, "supervise_after_reopens: 2", "reopen_limit: 2")
    assert "supervise_after_reopens" in _bad(
        tmp_path, "supervise_after_reopens: 2", "supervise_after_reopens: 0")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="nope.yaml"):
        load_policy(tmp_path / "nope.yaml")
