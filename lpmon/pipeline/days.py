"""Which days may be run: bounded by the model's traffic and by the calendar, so
that a typo (`--end 9999-12-31`) cannot write a row a day for millennia, nor
leave a far-future day as the last run for ever."""

from __future__ import annotations

import datetime as dt

from lpmon.config import Config


def tomorrow() -> dt.date:
    """The last day anything may be run for: UTC's tomorrow (a zone ahead of UTC is there already)."""
    return dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)


def calendar_day(value, where: str) -> str:
    """An ISO day no later than tomorrow, or ValueError naming `where`."""
    try:
        day = dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{where}: expected a date YYYY-MM-DD, got {value!r}") from None
    if day > tomorrow():
        raise ValueError(f"{where}: {day} is after tomorrow ({tomorrow()}): no traffic for it yet")
    return day.isoformat()


def check_days(config: Config, model_id: str, start, end=None) -> None:
    """Refuse (ValueError, one line) days after tomorrow, days before the model's
    first traffic partition, and ranges longer than the model's max_backfill_days.
    A day after the last partition (and not after tomorrow) runs: its traffic may
    be late, and the day is recorded as having none, as the DAG records it."""
    from lpmon.traffic import TrafficStore

    settings = config.model(model_id)
    start = dt.date.fromisoformat(str(start))
    end = start if end is None else dt.date.fromisoformat(str(end))
    shown = str(start) if end == start else f"{start}..{end}"
    calendar_day(end, shown)
    span = (end - start).days + 1
    if span > settings.max_backfill_days:
        raise ValueError(
            f"{shown} is {span:,} days, more than max_backfill_days = {settings.max_backfill_days} for {model_id} "
            "(a setting in [defaults] or [models.<id>]): split the range, or raise the setting"
        )
    days = TrafficStore(settings.traffic).days()
    if not days:
        raise ValueError(f"{shown}: {model_id}'s traffic ({settings.traffic}) has no partitions (date=YYYY-MM-DD/)")
    if start < days[0]:  # after the last partition: a day whose traffic is late, recorded as such
        raise ValueError(
            f"{shown} starts before {model_id}'s traffic, which holds {days[0]}..{days[-1]} ({settings.traffic})"
        )
