"""Working-day calendar (工作日历): weekends, public holidays (法定节假日) and make-up working days
(调休上班日). Deadlines (时限) in this product are counted in working days on this calendar."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta


class WorkCalendar:
    """Working days are Monday to Friday, minus ``holidays``, plus ``makeup_workdays``.

    A make-up working day (调休) is a Saturday or Sunday that is worked; a holiday that falls on a
    weekday is not worked. A date in both sets is a configuration error.
    """

    def __init__(self, holidays: Iterable[date] = (), makeup_workdays: Iterable[date] = ()) -> None:
        self.holidays: frozenset[date] = frozenset(holidays)
        self.makeup_workdays: frozenset[date] = frozenset(makeup_workdays)
        both = self.holidays & self.makeup_workdays
        if both:
            days = ", ".join(d.isoformat() for d in sorted(both))
            raise ValueError(f"日期同时配置为节假日和调休上班日: {days}")

    def is_working_day(self, d: date | datetime) -> bool:
        day = d.date() if isinstance(d, datetime) else d
        if day in self.makeup_workdays:
            return True
        if day in self.holidays:
            return False
        return day.weekday() < 5

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after ``d``."""
        day = d + timedelta(days=1)
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """The deadline ``n`` working days after ``start``, at the same clock time.

        An order received on a non-working day starts counting at 00:00 of the next working day,
        so the time allowed is always ``n`` full working days. ``n == 0`` returns ``start``.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        if n == 0:
            return start
        if not self.is_working_day(start):
            first = self.next_working_day(start.date())
            start = datetime.combine(first, time(0, 0), tzinfo=start.tzinfo)
        day = start.date()
        for _ in range(n):
            day = self.next_working_day(day)
        return datetime.combine(day, start.timetz())

    def working_days_between(self, a: date | datetime, b: date | datetime) -> int:
        """Working days ``d`` with ``a < d <= b`` (by date); negative when ``b`` is before ``a``."""
        start = a.date() if isinstance(a, datetime) else a
        end = b.date() if isinstance(b, datetime) else b
        if end < start:
            return -self.working_days_between(end, start)
        count = 0
        day = start + timedelta(days=1)
        while day <= end:
            count += self.is_working_day(day)
            day += timedelta(days=1)
        return count
