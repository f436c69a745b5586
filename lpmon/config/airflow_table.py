"""The [airflow] table: its checks, and airflow_settings, which DAG files call
at parse time (it reads that table alone and imports nothing beyond the
standard library: no sqlalchemy, no store)."""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from pathlib import Path

from lpmon.config.files import default_path, read_text
from lpmon.config.settings import AirflowSettings, ConfigError


def airflow_settings(path: str | Path | None = None) -> AirflowSettings:
    """Only the [airflow] table, for DAG files at parse time: reads the TOML
    file alone (no models checked, nothing else touched); defaults when the
    file is missing or unreadable, so a parse never fails on it (the tasks
    load the whole config and report its problems)."""
    try:
        data = tomllib.loads(read_text(Path(path or default_path())))
    except (ConfigError, tomllib.TOMLDecodeError):
        return AirflowSettings()
    problems: list[str] = []
    settings = check_airflow(data.get("airflow", {}), problems)
    return AirflowSettings() if problems else settings


def check_airflow(values, problems: list[str]) -> AirflowSettings:
    """The [airflow] table's values over AirflowSettings(); defaults when it is not a table."""
    if not isinstance(values, dict):
        problems.append("airflow: must be a table")
        return AirflowSettings()
    changes, defaults = {}, AirflowSettings()
    for key, value in values.items():
        if key not in {f.name for f in fields(AirflowSettings)}:
            problems.append(f"airflow.{key}: unknown key")
        elif isinstance(getattr(defaults, key), bool):
            if not isinstance(value, bool):
                problems.append(f"airflow.{key}: expected true or false, got {value!r}")
            else:
                changes[key] = value
        elif isinstance(getattr(defaults, key), int):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"airflow.{key}: expected a non-negative integer, got {value!r}")
            elif key == "partition_poke_s" and value < 1:
                problems.append(f"airflow.partition_poke_s: expected at least 1 (seconds), got {value!r}")
            else:
                changes[key] = value
        elif not isinstance(value, str) or not (value or key == "base_url"):  # base_url "": no web server
            problems.append(f"airflow.{key}: expected a non-empty string, got {value!r}")
        elif key == "start_date" and not _is_date(value):
            problems.append(f"airflow.start_date: expected an ISO date (YYYY-MM-DD), got {value!r}")
        elif key == "timezone" and not _is_zone(value):
            problems.append(f"airflow.timezone: not a known time zone (e.g. UTC, Europe/Paris), got {value!r}")
        elif key == "partition_marker" and ("/" in value or value in (".", "..")):
            problems.append(f"airflow.partition_marker: a file name inside the partition, got {value!r}")
        else:
            changes[key] = value
    return replace(AirflowSettings(), **changes)


def _is_zone(name: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
        return True
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False


def _is_date(text: str) -> bool:
    import datetime as dt

    try:
        dt.date.fromisoformat(text)
        return True
    except ValueError:
        return False
