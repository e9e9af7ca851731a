"""Working calendar: working hours, weekends, public holidays and make-up working days.

A :class:`WorkCalendar` answers, for many UTC times at once, whether each falls outside
working time in a given time zone, and why (``"holiday National Day"``, ``"weekend"``,
``"before 08:00"``, ``"after 18:00"``). The calendar is data, in three layers, later ones
overriding earlier ones:

1. weekends (Saturday and Sunday by default);
2. a country's public holidays and make-up working days: for China (``country="CN"``, the
   default) from the ``chinese_calendar`` package, which knows the State Council's yearly
   holiday arrangements including the weekend days that become working days (调休); for
   other countries from the optional ``holidays`` package when it is installed. Dates of years
   the source does not cover fall back to weekends only, with one logged warning;
3. a user calendar (a CSV file or a DataFrame with ``date, kind[, name]``, ``kind`` being
   ``holiday`` or ``workday``), which overrides both.

Working hours are a half-open interval of local wall-clock time, ``[start, end)``: with the
default 08:00–18:00, 08:00:00 and 17:59:59 are working time, 07:59:59 and 18:00:00 are not.
Days are local calendar days in the time zone given to :meth:`WorkCalendar.is_off_hours`,
so daylight-saving changes are handled by the zone database.

Examples
--------
>>> import pandas as pd
>>> cal = WorkCalendar()
>>> times = pd.to_datetime(["2024-10-01 02:00", "2024-09-29 02:00", "2024-09-30 11:00"],
...                        utc=True)
>>> mask, reason = cal.is_off_hours(times, tz="Asia/Shanghai")
>>> mask.tolist(), reason.tolist()
([True, False, True], ['holiday National Day', '', 'after 18:00'])
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from geosup.errors import ConfigError, DataSourceError

__all__ = ["DAY_KINDS", "WorkCalendar", "parse_clock", "read_calendar_file"]

logger = logging.getLogger(__name__)

#: Kinds of day :meth:`WorkCalendar.day_kinds` returns.
DAY_KINDS: tuple[str, ...] = ("workday", "weekend", "holiday")

_NS_PER_DAY = 86_400 * 1_000_000_000
_NS_PER_S = 1_000_000_000
_WEEKDAY_NAMES = {
    "mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2, "thu": 3,
    "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}
_KIND_ALIASES = {
    "holiday": "holiday", "off": "holiday", "rest": "holiday", "休": "holiday",
    "假": "holiday", "节假日": "holiday", "休息日": "holiday",
    "workday": "workday", "work": "workday", "working": "workday", "working day": "workday",
    "班": "workday", "工作日": "workday", "调休": "workday", "补班": "workday",
}
# Warn once per (country, year) that the holiday source does not cover a year.
_WARNED: set[tuple[str, int]] = set()


def parse_clock(text: str | _dt.time) -> int:
    """Seconds after local midnight of a wall-clock time ``"HH:MM"`` or ``"HH:MM:SS"``.

    ``"24:00"`` is accepted as the end of the day.

    Examples
    --------
    >>> parse_clock("08:00"), parse_clock("17:30:15"), parse_clock("24:00")
    (28800, 63015, 86400)
    """
    if isinstance(text, _dt.time):
        return text.hour * 3600 + text.minute * 60 + text.second
    parts = str(text).strip().split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError(text)
        h, m = int(parts[0]), int(parts[1])
        s = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        msg = f"working-hours time {text!r} is not HH:MM or HH:MM:SS"
        raise ConfigError(msg) from None
    if not (0 <= m < 60 and 0 <= s < 60 and (0 <= h < 24 or (h == 24 and m == 0 and s == 0))):
        msg = f"working-hours time {text!r} is not a time of day"
        raise ConfigError(msg)
    return h * 3600 + m * 60 + s


def _clock_label(seconds: int) -> str:
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" + (f":{s:02d}" if s else "")


def _day_numbers(dates: Iterable[Any]) -> np.ndarray:
    """Days since 1970-01-01 of calendar dates (date, Timestamp or ISO text)."""
    idx = pd.DatetimeIndex(pd.to_datetime(pd.Series(list(dates), dtype=object), errors="raise"))
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    return (idx.as_unit("ns").asi8 // _NS_PER_DAY).astype(np.int64)


def read_calendar_file(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a user calendar CSV: ``date, kind[, name]`` (kind ``holiday`` or ``workday``).

    Header names are matched case-insensitively; ``type`` is accepted for ``kind`` and
    ``description`` for ``name``. Chinese kinds (``休``/``班``, ``节假日``/``工作日``,
    ``调休``/``补班``) are understood.

    Returns
    -------
    pandas.DataFrame
        ``date`` (datetime64, midnight), ``kind`` and ``name``.

    Raises
    ------
    DataSourceError
        The file cannot be read.
    ConfigError
        A column is missing or a row has an unparseable date or an unknown kind (the message
        names the row).
    """
    p = Path(path)
    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                            skipinitialspace=True)
    except PermissionError:
        msg = f"cannot read the calendar file {p}: permission denied"
        raise DataSourceError(msg) from None
    except FileNotFoundError:
        msg = f"the calendar file {p} does not exist"
        raise DataSourceError(msg) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        msg = f"cannot read the calendar file {p}: {err}"
        raise DataSourceError(msg) from err
    return _normalize_user_days(frame, what=str(p))


def _normalize_user_days(frame: pd.DataFrame, *, what: str) -> pd.DataFrame:
    cols = {str(c).strip().lower(): c for c in frame.columns}
    date_col = cols.get("date") or cols.get("day") or cols.get("日期")
    kind_col = cols.get("kind") or cols.get("type") or cols.get("类型")
    name_col = cols.get("name") or cols.get("description") or cols.get("名称")
    if date_col is None or kind_col is None:
        msg = (f"the calendar {what} needs the columns date and kind (holiday|workday); "
               f"it has: {', '.join(map(str, frame.columns))}")
        raise ConfigError(msg)
    dates = pd.to_datetime(frame[date_col].astype(str).str.strip(), errors="coerce",
                           format="mixed")
    bad = dates.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        msg = (f"the calendar {what}, row {row}: date {frame[date_col].iloc[row - 1]!r} "
               "is not a date (use YYYY-MM-DD)")
        raise ConfigError(msg)
    kinds = frame[kind_col].astype(str).str.strip().str.lower().map(_KIND_ALIASES)
    bad = kinds.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        msg = (f"the calendar {what}, row {row}: kind {frame[kind_col].iloc[row - 1]!r} "
               "is not 'holiday' or 'workday'")
        raise ConfigError(msg)
    names = (frame[name_col].astype(str).str.strip() if name_col is not None
             else pd.Series([""] * len(frame), index=frame.index))
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    return pd.DataFrame({"date": dates.dt.normalize().to_numpy(),
                         "kind": kinds.to_numpy(dtype=object),
                         "name": names.to_numpy(dtype=object)})


class WorkCalendar:
    """Working hours, weekends, public holidays and make-up working days.

    Parameters
    ----------
    start, end : str, default "08:00", "18:00"
        Local working hours ``[start, end)`` on working days.
    weekend : sequence of int or str, default (5, 6)
        Weekend days (Monday = 0, or names such as ``"sat"``).
    country : str or None, default "CN"
        Public holidays of this country: ``"CN"`` through ``chinese_calendar`` (holidays and
        make-up working days), another ISO code through the optional ``holidays`` package
        (holidays only; without the package: weekends only and a logged warning), ``None``
        for none.
    subdiv : str, optional
        A subdivision for the ``holidays`` package (``"IL"``, ``"ENG"`` …).
    user_days : path or DataFrame, optional
        A user calendar (``date, kind[, name]``) that overrides the weekend and country rules.

    Examples
    --------
    >>> cal = WorkCalendar(start="07:30", end="17:00", country=None)
    >>> cal.day_kinds(["2024-10-01", "2024-10-05"])[0].tolist()
    ['workday', 'weekend']
    """

    def __init__(
        self,
        *,
        start: str = "08:00",
        end: str = "18:00",
        weekend: Sequence[int | str] = (5, 6),
        country: str | None = "CN",
        subdiv: str | None = None,
        user_days: str | os.PathLike[str] | pd.DataFrame | None = None,
    ) -> None:
        self.start = parse_clock(start)
        self.end = parse_clock(end)
        if self.end <= self.start:
            msg = f"working hours end ({end}) must be after their start ({start})"
            raise ConfigError(msg)
        days: list[int] = []
        for d in weekend:
            if isinstance(d, str):
                key = d.strip().lower()
                if key not in _WEEKDAY_NAMES:
                    msg = f"unknown weekend day {d!r}; use mon … sun or 0 (Monday) … 6"
                    raise ConfigError(msg)
                days.append(_WEEKDAY_NAMES[key])
            elif 0 <= int(d) <= 6:
                days.append(int(d))
            else:
                msg = f"weekend day {d!r} is not 0 (Monday) … 6 (Sunday)"
                raise ConfigError(msg)
        self.weekend = tuple(sorted(set(days)))
        self.country = country.upper() if isinstance(country, str) and country else None
        self.subdiv = subdiv
        if user_days is None:
            self.user_days = pd.DataFrame({"date": pd.Series([], dtype="datetime64[ns]"),
                                           "kind": pd.Series([], dtype=object),
                                           "name": pd.Series([], dtype=object)})
        elif isinstance(user_days, pd.DataFrame):
            self.user_days = _normalize_user_days(user_days, what="table")
        else:
            self.user_days = read_calendar_file(user_days)
        self._country_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> WorkCalendar:
        """A calendar from the ``[calendar]`` settings table.

        Keys: ``start``, ``end``, ``weekend`` (list), ``country``, ``subdiv``, ``file``.
        Keyword arguments override the settings.
        """
        values: dict[str, Any] = {}
        if settings is not None:
            table = settings.get("calendar", {}) or {}
            if not isinstance(table, Mapping):
                msg = "[calendar] must be a table (start, end, weekend, country, subdiv, file)"
                raise ConfigError(msg)
            for key in ("start", "end", "weekend", "country", "subdiv"):
                if key in table:
                    values[key] = table[key]
            if table.get("file"):
                values["user_days"] = table["file"]
            if values.get("country") in ("", "none", "None"):
                values["country"] = None
        values.update(overrides)
        return cls(**values)

    def __repr__(self) -> str:
        return (f"WorkCalendar(start={_clock_label(self.start)!r}, end={_clock_label(self.end)!r}, "
                f"weekend={self.weekend}, country={self.country!r}, "
                f"user_days={len(self.user_days)})")

    # ------------------------------------------------------------------ country holidays
    def _country_days(self, years: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Special days of the country for these years: day numbers, is_holiday, names."""
        if self.country is None or not len(years):
            return (np.empty(0, np.int64), np.empty(0, bool), np.empty(0, object))
        parts = []
        for year in sorted({int(y) for y in years}):
            if year not in self._country_cache:
                self._country_cache[year] = self._load_country_year(year)
            parts.append(self._country_cache[year])
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]))

    def _warn_uncovered(self, year: int, why: str) -> None:
        key = (str(self.country), year)
        if key not in _WARNED:
            _WARNED.add(key)
            logger.warning("no public holidays for %s in %d (%s); weekends only",
                           self.country, year, why)

    def _load_country_year(self, year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        empty = (np.empty(0, np.int64), np.empty(0, bool), np.empty(0, object))
        if self.country == "CN":
            import chinese_calendar

            hol = {d: n for d, n in chinese_calendar.holidays.items() if d.year == year}
            work = {d: n for d, n in chinese_calendar.workdays.items() if d.year == year}
            covered = {d.year for d in chinese_calendar.holidays}
            if year not in covered:
                self._warn_uncovered(year, "chinese_calendar covers "
                                     f"{min(covered)}–{max(covered)}")
                return empty
            dates = list(hol) + list(work)
            names = [str(v) for v in hol.values()] + [str(v) for v in work.values()]
            is_hol = [True] * len(hol) + [False] * len(work)
        else:
            try:
                import holidays as holidays_pkg
            except ImportError:
                self._warn_uncovered(year, "the optional 'holidays' package is not installed")
                return empty
            try:
                table = holidays_pkg.country_holidays(self.country, subdiv=self.subdiv,
                                                      years=[year])
            except NotImplementedError as err:
                msg = f"the holidays package does not know country {self.country!r}: {err}"
                raise ConfigError(msg) from err
            dates = list(table.keys())
            names = [str(v) for v in table.values()]
            is_hol = [True] * len(dates)
        if not dates:
            return empty
        return (_day_numbers(dates), np.asarray(is_hol, dtype=bool),
                np.asarray(names, dtype=object))

    # ------------------------------------------------------------------ queries
    def _classify_days(self, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kind code (0 workday, 1 weekend, 2 holiday) and holiday name of day numbers."""
        n = day.shape[0]
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        kind = np.where(np.isin(weekday, self.weekend), 1, 0).astype(np.int8)
        name = np.full(n, "", dtype=object)
        if n == 0:
            return kind, name
        unique_days = np.unique(day)
        years = pd.DatetimeIndex(unique_days * _NS_PER_DAY).year.to_numpy()
        cdays, chol, cname = self._country_days(np.unique(years))
        layers = [(cdays, chol, cname)]
        if len(self.user_days):
            udays = (pd.DatetimeIndex(self.user_days["date"]).as_unit("ns").asi8
                     // _NS_PER_DAY).astype(np.int64)
            layers.append((udays, (self.user_days["kind"] == "holiday").to_numpy(),
                           self.user_days["name"].to_numpy(dtype=object)))
        for ldays, lhol, lname in layers:  # later layers override earlier ones
            if not len(ldays):
                continue
            order = np.argsort(ldays, kind="stable")
            sd, sh, sn = ldays[order], lhol[order], lname[order]
            # the last entry of a repeated date wins
            pos = np.searchsorted(sd, day, side="right") - 1
            hit = pos >= 0
            hit[hit] = sd[pos[hit]] == day[hit]
            p = pos[hit]
            kind[hit] = np.where(sh[p], 2, 0)
            name[hit] = np.where(sh[p], sn[p], "")
        return kind, name

    def day_kinds(self, dates: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Kind (``workday``, ``weekend``, ``holiday``) and holiday name of calendar dates.

        Parameters
        ----------
        dates : array_like
            Local calendar dates (``date``, Timestamp or ISO text).

        Returns
        -------
        kind, name : numpy.ndarray of str
            ``name`` is the holiday's name, ``""`` on other days.

        Examples
        --------
        >>> kinds, names = WorkCalendar().day_kinds(["2024-10-01", "2024-09-29", "2024-09-28"])
        >>> kinds.tolist(), names.tolist()
        (['holiday', 'workday', 'weekend'], ['National Day', '', ''])
        """
        code, name = self._classify_days(_day_numbers(np.atleast_1d(np.asarray(dates))))
        return np.asarray(DAY_KINDS, dtype=object)[code], name

    def is_off_hours(
        self,
        times_utc: ArrayLike,
        *,
        tz: str,
        start: str | None = None,
        end: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which times fall outside working time in ``tz``, and why.

        Parameters
        ----------
        times_utc : array_like
            Times: tz-aware (any zone), naive (read as UTC) or int64 nanoseconds UTC.
        tz : str
            The IANA zone whose wall clock and calendar days apply.
        start, end : str, optional
            Working hours overriding the calendar's own for this call.

        Returns
        -------
        mask : numpy.ndarray of bool
            True outside working time. Missing times are False (not judged).
        reason : numpy.ndarray of str
            ``"holiday <name>"``, ``"weekend"``, ``"before HH:MM"``, ``"after HH:MM"`` or
            ``""``; a holiday or weekend is reported before the hour.

        Examples
        --------
        >>> import pandas as pd
        >>> times = pd.to_datetime(["2024-03-08 12:30", "2024-03-11 12:30"], utc=True)
        >>> WorkCalendar(country=None).is_off_hours(times, tz="America/New_York")[1].tolist()
        ['before 08:00', '']
        """
        start_s = self.start if start is None else parse_clock(start)
        end_s = self.end if end is None else parse_clock(end)
        if end_s <= start_s:
            msg = f"working hours end ({end}) must be after their start ({start})"
            raise ConfigError(msg)
        arr = np.asarray(times_utc)
        if arr.dtype.kind in "iu":
            idx = pd.DatetimeIndex(arr.astype("int64").view("datetime64[ns]")).tz_localize("UTC")
        else:
            idx = pd.DatetimeIndex(pd.to_datetime(pd.Series(np.ravel(times_utc)), utc=True))
        try:
            local = idx.tz_convert(tz).tz_localize(None).as_unit("ns")
        except (KeyError, ValueError) as err:  # pragma: no cover - tz validated upstream
            msg = f"unknown time zone {tz!r}: {err}"
            raise ConfigError(msg) from err
        missing = np.asarray(local.isna())
        ns = local.asi8.copy()
        ns[missing] = 0
        day = ns // _NS_PER_DAY
        sec = (ns - day * _NS_PER_DAY) // _NS_PER_S
        kind, name = self._classify_days(day)
        reason = np.full(ns.shape[0], "", dtype=object)
        before = sec < start_s
        after = sec >= end_s
        reason[before] = f"before {_clock_label(start_s)}"
        reason[after] = f"after {_clock_label(end_s)}"
        reason[kind == 1] = "weekend"
        hol = kind == 2
        if hol.any():
            names = name[hol].astype(str)
            reason[hol] = np.where(names == "", "holiday",
                                   np.char.add("holiday ", names)).astype(object)
        reason[missing] = ""
        mask = (reason != "") & ~missing
        return mask, reason
