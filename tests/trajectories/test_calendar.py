"""WorkCalendar: working hours, weekends, China's holidays and make-up days, user overrides."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from geosup.config import Settings
from geosup.errors import ConfigError
from trajectories import calendar as calendar_module
from trajectories.calendar import WorkCalendar, parse_clock, read_calendar_file


def local(texts: list[str], tz: str) -> pd.DatetimeIndex:
    """Local wall-clock times in ``tz`` converted to UTC (what the audit receives)."""
    return pd.DatetimeIndex(texts).tz_localize(tz).tz_convert("UTC")


def test_national_day_is_a_holiday_and_the_sunday_before_a_makeup_working_day():
    cal = WorkCalendar()
    times = local(["2024-10-01 10:00", "2024-09-29 10:00", "2024-09-28 10:00",
                   "2024-10-05 10:00", "2024-09-30 10:00"], "Asia/Shanghai")
    mask, reason = cal.is_off_hours(times, tz="Asia/Shanghai")
    # 09-29 is a Sunday but a working day (调休); 09-28 a plain Saturday; 10-05 a Saturday
    # inside the National Day holiday: the holiday is the reason.
    assert mask.tolist() == [True, False, True, True, False]
    assert reason.tolist() == ["holiday National Day", "", "weekend", "holiday National Day", ""]
    kinds, names = cal.day_kinds(["2024-10-01", "2024-09-29", "2024-09-28", "2024-10-12"])
    assert kinds.tolist() == ["holiday", "workday", "weekend", "workday"]
    assert names.tolist() == ["National Day", "", "", ""]


def test_a_makeup_working_day_still_has_working_hours():
    cal = WorkCalendar()
    times = local(["2024-09-29 07:59:59", "2024-09-29 18:30"], "Asia/Shanghai")
    assert cal.is_off_hours(times, tz="Asia/Shanghai")[1].tolist() == [
        "before 08:00", "after 18:00"]


def test_hour_boundaries_are_half_open():
    cal = WorkCalendar(country=None)
    times = local(["2024-09-30 07:59:59", "2024-09-30 08:00:00", "2024-09-30 17:59:59",
                   "2024-09-30 18:00:00", "2024-09-30 00:00:00", "2024-09-30 23:59:59"],
                  "Asia/Shanghai")
    mask, reason = cal.is_off_hours(times, tz="Asia/Shanghai")
    assert mask.tolist() == [True, False, False, True, True, True]
    assert reason.tolist() == ["before 08:00", "", "", "after 18:00", "before 08:00",
                               "after 18:00"]
    # configured hours, and hours overridden per call
    mask2, reason2 = WorkCalendar(start="07:30", end="17:00", country=None).is_off_hours(
        times, tz="Asia/Shanghai")
    assert mask2.tolist() == [False, False, True, True, True, True]
    assert reason2[2] == "after 17:00"
    mask3, _ = cal.is_off_hours(times, tz="Asia/Shanghai", start="08:00:01", end="24:00")
    assert mask3.tolist() == [True, True, False, False, True, False]


def test_user_file_overrides_country_and_weekend(tmp_path):
    path = tmp_path / "calendar.csv"
    path.write_text("date,kind,name\n2024-10-01,workday,duty day\n"
                    "2024-09-30,holiday,Flood relief\n2024-09-28,workday,\n"
                    "2024-09-27,休,\n", encoding="utf-8")
    cal = WorkCalendar(user_days=path)
    times = local(["2024-10-01 10:00", "2024-09-30 10:00", "2024-09-28 10:00",
                   "2024-10-02 10:00", "2024-09-27 10:00"], "Asia/Shanghai")
    mask, reason = cal.is_off_hours(times, tz="Asia/Shanghai")
    assert mask.tolist() == [False, True, False, True, True]
    assert reason.tolist() == ["", "holiday Flood relief", "", "holiday National Day", "holiday"]
    table = read_calendar_file(path)
    assert table["kind"].tolist() == ["workday", "holiday", "workday", "holiday"]


def test_user_file_errors_name_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("date,kind\n2024-10-01,holiday\n2024-10-02,party\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="row 2: kind 'party'"):
        WorkCalendar(user_days=path)
    path.write_text("day,kind\nnot a date,holiday\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="row 1: date 'not a date'"):
        WorkCalendar(user_days=path)
    path.write_text("when,what\n2024-10-01,holiday\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="needs the columns date and kind"):
        WorkCalendar(user_days=path)


def test_dst_free_shanghai_vs_a_dst_zone():
    cal = WorkCalendar(country=None)
    # 12:30 UTC is 08:30 in New York after the switch to EDT (2024-03-10), 07:30 before it.
    times = pd.to_datetime(["2024-03-08 12:30", "2024-03-11 12:30", "2024-11-04 12:30"],
                           utc=True)
    ny = cal.is_off_hours(times, tz="America/New_York")[1]
    assert ny.tolist() == ["before 08:00", "", "before 08:00"]
    # Shanghai has no DST: 00:30 UTC is 08:30 on every date of the year.
    times = pd.to_datetime(["2024-01-08 00:30", "2024-07-08 00:30", "2024-01-08 10:00"],
                           utc=True)
    sh = cal.is_off_hours(times, tz="Asia/Shanghai")[1]
    assert sh.tolist() == ["", "", "after 18:00"]
    # The local calendar day decides the weekend: Friday 20:00 UTC is Saturday in Shanghai.
    fri = pd.to_datetime(["2024-10-11 20:00"], utc=True)
    assert cal.is_off_hours(fri, tz="Asia/Shanghai")[1].tolist() == ["weekend"]
    assert cal.is_off_hours(fri, tz="America/New_York")[1].tolist() == [""]


def test_years_outside_chinese_calendar_fall_back_to_weekends_with_one_warning(caplog):
    calendar_module._WARNED.discard(("CN", 2099))
    cal = WorkCalendar()
    times = local(["2099-10-01 10:00", "2099-10-03 10:00", "2099-10-04 10:00"],
                  "Asia/Shanghai")
    with caplog.at_level(logging.WARNING, logger="trajectories.calendar"):
        reason = cal.is_off_hours(times, tz="Asia/Shanghai")[1]
        WorkCalendar().is_off_hours(times, tz="Asia/Shanghai")
    assert reason.tolist() == ["", "weekend", "weekend"]  # 2099-10-01 is a Thursday
    warnings = [r for r in caplog.records if "2099" in r.getMessage()]
    assert len(warnings) == 1


def test_other_countries_use_the_holidays_package_or_weekends():
    try:
        import holidays  # noqa: F401
        has_pkg = True
    except ImportError:
        has_pkg = False
    cal = WorkCalendar(country="US")
    # 2017-07-04 (Independence Day, a Tuesday) and 2017-10-02 (China's National Day holiday).
    times = local(["2017-07-04 10:00", "2017-10-02 10:00"], "America/Chicago")
    reason = cal.is_off_hours(times, tz="America/Chicago")[1]
    assert reason[1] == ""  # Chinese holidays do not apply in the US
    if has_pkg:
        assert reason[0].startswith("holiday")
    else:
        assert reason[0] == ""


def test_missing_times_are_not_judged_and_ints_are_ns():
    cal = WorkCalendar(country=None)
    times = pd.Series(pd.to_datetime(["2024-09-30 03:00", None], utc=True))
    mask, reason = cal.is_off_hours(times, tz="UTC")
    assert mask.tolist() == [True, False] and reason.tolist() == ["before 08:00", ""]
    ns = np.array([pd.Timestamp("2024-09-30 20:00", tz="UTC").value], dtype=np.int64)
    assert cal.is_off_hours(ns, tz="UTC")[1].tolist() == ["after 18:00"]


def test_settings_and_validation():
    cfg = Settings.load(file=None, env={}, overrides={"calendar.start": "09:00",
                                                      "calendar.country": "none"})
    cal = WorkCalendar.from_settings(cfg)
    assert cal.start == parse_clock("09:00") and cal.country is None
    with pytest.raises(ConfigError, match="must be after"):
        WorkCalendar(start="18:00", end="08:00")
    with pytest.raises(ConfigError, match="not HH:MM"):
        WorkCalendar(start="8h")
    with pytest.raises(ConfigError, match="unknown weekend day"):
        WorkCalendar(weekend=("fri", "caturday"))
    assert WorkCalendar(weekend=("fri", "sat")).weekend == (4, 5)
