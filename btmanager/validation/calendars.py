"""Trading calendars for pnl.csv's dates: plain weekdays, or an exchange's sessions.

exchange_calendars is an optional extra and slow to import (~0.5 s), so it is imported only
when a rules file names an exchange calendar.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import date, timedelta
from types import ModuleType

WEEKDAYS = "weekdays"
INSTALL_HINT = "pip install 'btmanager[calendars]'"


class CalendarUnavailable(Exception):
    """The calendar cannot answer for these dates (e.g. outside the range it knows)."""


class DayCheck:
    """How a set of days compares with a calendar's sessions between the first and last day."""

    # A plain class: a dataclass costs ~1 ms to build at import, on every validated run.
    def __init__(
        self,
        calendar: str,
        missing: list[date] | None = None,
        off_days: list[date] | None = None,
    ) -> None:
        self.calendar = calendar
        self.missing: list[date] = missing if missing is not None else []  # sessions without a row
        # Days with rows that are not sessions.
        self.off_days: list[date] = off_days if off_days is not None else []

    @property
    def is_exchange(self) -> bool:
        return self.calendar != WEEKDAYS


def _exchange_calendars() -> ModuleType | None:
    try:
        import exchange_calendars  # type: ignore[import-untyped]
    except ImportError:
        return None
    module: ModuleType = exchange_calendars
    return module


def calendar_problem(code: str) -> str | None:
    """Why `code` cannot be used as a calendar, or None if it can."""
    if code == WEEKDAYS:
        return None
    xcals = _exchange_calendars()
    if xcals is None:
        return f"calendar '{code}' needs exchange_calendars, which is not installed: {INSTALL_HINT}"
    if code not in xcals.get_calendar_names(include_aliases=True):
        return (
            f"unknown calendar '{code}' (use \"{WEEKDAYS}\" or an exchange_calendars code "
            "such as XNYS, XLON or XBOM; exchange_calendars.get_calendar_names() lists all)"
        )
    return None


def check_days(code: str, days: Iterable[date]) -> DayCheck:
    """Compare the days that have rows with the calendar's sessions over the same span."""
    present = sorted(set(days))
    result = DayCheck(code)
    if not present:
        return result
    sessions = _sessions(code, present[0], present[-1])
    have = set(present)
    result.missing = [d for d in sessions if d not in have]
    session_set = set(sessions)
    result.off_days = [d for d in present if d not in session_set]
    return result


def _sessions(code: str, first: date, last: date) -> list[date]:
    if code == WEEKDAYS:
        span = (last - first).days + 1
        every_day = (first + timedelta(days=i) for i in range(span))
        return [d for d in every_day if d.weekday() < 5]
    xcals = _exchange_calendars()
    if xcals is None:
        raise CalendarUnavailable(f"exchange_calendars is not installed: {INSTALL_HINT}")
    # exchange_calendars covers ~20 years unless told otherwise, and needs start < end.
    end = max(last, first + timedelta(days=1))
    try:
        with warnings.catch_warnings():  # the library's pandas deprecation notices are not ours
            warnings.simplefilter("ignore")
            calendar = xcals.get_calendar(code, start=first.isoformat(), end=end.isoformat())
            index = calendar.sessions  # exactly the sessions between start and end
    except Exception as exc:  # the library raises many ValueError subclasses; any means "cannot"
        raise CalendarUnavailable(str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc
    return [day for day in (ts.date() for ts in index) if first <= day <= last]
