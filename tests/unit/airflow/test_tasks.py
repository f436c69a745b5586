"""The Airflow task bodies (lpmon.airflow.tasks): the monitored day, the config, the failure callback."""

import datetime as dt
from types import SimpleNamespace


def test_the_monitored_day_comes_from_the_data_interval():
    from lpmon.airflow.tasks import day_of, last_day_of

    at = dt.datetime(2026, 11, 5, tzinfo=dt.timezone.utc)
    run = {"logical_date": at, "data_interval_start": at, "data_interval_end": at + dt.timedelta(days=1)}
    assert day_of(run) == "2026-11-05"
    # In a zone east of UTC, the interval of the Paris day 11-05 starts at 23:00 UTC on 11-04.
    paris = at - dt.timedelta(hours=1)
    assert day_of({"data_interval_start": paris}, "Europe/Paris") == "2026-11-05"
    # Airflow 3 manual runs may have no logical date: the last complete day before the run.
    manual = {
        "logical_date": None,
        "data_interval_start": None,
        "data_interval_end": None,
        "dag_run": SimpleNamespace(run_after=at + dt.timedelta(hours=7)),
    }
    assert day_of(manual) == "2026-11-04" and last_day_of(manual) == "2026-11-04"
    assert day_of(dict(manual, params={"day": "2026-10-30"})) == "2026-10-30"
    # A weekly interval calibrates on its last day.
    week = {"data_interval_start": at - dt.timedelta(days=7), "data_interval_end": at}
    assert last_day_of(week) == "2026-11-04"


def test_a_day_param_that_is_no_date_is_one_clear_error():
    import pytest

    from lpmon.airflow.tasks import day_of
    from lpmon.config import ConfigError

    with pytest.raises(ConfigError, match=r"param day: expected a date YYYY-MM-DD, got '2026-13-01'"):
        day_of({"params": {"day": "2026-13-01"}})
    with pytest.raises(ConfigError, match=r"param day: 9999-12-31 is after tomorrow"):  # issue 28
        day_of({"params": {"day": "9999-12-31"}})


def test_tasks_without_a_config_say_where_to_set_it(monkeypatch):
    import pytest

    from lpmon.airflow.tasks import config
    from lpmon.config import ConfigError

    monkeypatch.delenv("LPMON_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="Airflow Variable lpmon_config or LPMON_CONFIG"):
        config()


def test_the_failure_callback_never_raises(tmp_path, monkeypatch, airflow_db):
    """No SMTP connection, or a context it cannot make sense of: logged, not raised."""
    from lpmon.airflow import failures
    from support.logs import LogLines
    from support.world import dag_world

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.setenv("LPMON_CONFIG", str(dag_world(tmp_path, ["stable"], days=1)))
    at = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
    ti = SimpleNamespace(dag_id="lpmon_monitor", task_id="models", map_index=-1)
    context = {
        "ti": ti,
        "data_interval_start": at,
        "exception": RuntimeError("boom"),
        "dag_run": SimpleNamespace(dag_id="lpmon_monitor", run_id="r1", run_after=at),
    }
    with LogLines() as log:
        failures.notify_failure(context)
        failures.notify_failure({})  # nothing usable at all
    logged = log.text
    assert "the failure email for lpmon_monitor.models was not sent: no SMTP connection 'smtp_default'" in logged
    assert "the failure email could not be prepared" in logged
