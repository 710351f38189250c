"""Working-day arithmetic: weekends, holidays, make-up working days (调休)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from models.calendar import WorkCalendar
from models.policy import load_policy

PLAIN = WorkCalendar()
CAL = load_policy().calendar()


def test_weekdays_are_working_days_and_weekends_are_not() -> None:
    assert PLAIN.is_working_day(date(2025, 3, 7))  # Friday
    assert not PLAIN.is_working_day(date(2025, 3, 8))  # Saturday
    assert not PLAIN.is_working_day(datetime(2025, 3, 9, 10, 0))  # Sunday


def test_adding_over_a_weekend_skips_it() -> None:
    friday = datetime(2025, 3, 7, 15, 30)
    assert PLAIN.add_working_days(friday, 1) == datetime(2025, 3, 10, 15, 30)
    assert PLAIN.add_working_days(friday, 5) == datetime(2025, 3, 14, 15, 30)
    assert PLAIN.add_working_days(friday, 0) == friday


def test_order_received_on_a_weekend_gets_full_working_days() -> None:
    saturday = datetime(2025, 3, 8, 11, 0)
    # counting starts Monday 00:00, so one working day ends Tuesday 00:00
    assert PLAIN.add_working_days(saturday, 1) == datetime(2025, 3, 11, 0, 0)


def test_national_day_holiday_and_makeup_days_2025() -> None:
    assert not CAL.is_working_day(date(2025, 10, 1))
    assert not CAL.is_working_day(date(2025, 10, 8))  # Wednesday, still 国庆 holiday
    assert CAL.is_working_day(date(2025, 9, 28))  # Sunday 调休上班
    assert CAL.is_working_day(date(2025, 10, 11))  # Saturday 调休上班
    # Friday 26 Sep + 1 → Sunday 28 Sep (make-up day); + 2 → Thursday 9 Oct
    assert CAL.add_working_days(datetime(2025, 9, 26, 9, 0), 1) == datetime(2025, 9, 28, 9, 0)
    assert CAL.add_working_days(datetime(2025, 9, 26, 9, 0), 2) == datetime(2025, 9, 29, 9, 0)
    assert CAL.add_working_days(datetime(2025, 9, 30, 9, 0), 1) == datetime(2025, 10, 9, 9, 0)


def test_spring_festival_2026() -> None:
    assert CAL.is_working_day(date(2026, 2, 14))  # Saturday 调休上班
    assert not CAL.is_working_day(date(2026, 2, 17))  # 春节
    assert CAL.add_working_days(datetime(2026, 2, 13, 10, 0), 2) == datetime(2026, 2, 24, 10, 0)


def test_working_days_between_counts_half_open_interval() -> None:
    assert PLAIN.working_days_between(date(2025, 3, 7), date(2025, 3, 10)) == 1
    assert PLAIN.working_days_between(date(2025, 3, 10), date(2025, 3, 7)) == -1
    assert CAL.working_days_between(date(2025, 9, 30), date(2025, 10, 9)) == 1
    assert PLAIN.working_days_between(date(2025, 3, 7), date(2025, 3, 7)) == 0


def test_timezone_of_start_is_kept() -> None:
    from datetime import timedelta, timezone

    tz = timezone(timedelta(hours=8))
    start = datetime(2025, 3, 7, 9, 0, tzinfo=tz)
    assert PLAIN.add_working_days(start, 1) == datetime(2025, 3, 10, 9, 0, tzinfo=tz)


def test_holiday_that_is_also_a_makeup_day_is_refused() -> None:
    with pytest.raises(ValueError, match="2025-01-26"):
        WorkCalendar([date(2025, 1, 26)], [date(2025, 1, 26)])
