"""The [airflow] table's keys that the DAGs read at parse time, and what the
models task says about a day it cannot serve well."""

import datetime as dt

import pytest

from lpmon.config import AirflowSettings, ConfigError, load
from support.logs import LogLines
from support.world import dag_world

MODELS = '[models.m]\ntraffic = "t"\nsnapshot = "s"\n'


def test_no_start_date_by_default_and_the_new_keys_are_checked(tmp_path):
    assert AirflowSettings().start_date == "" and AirflowSettings().timezone == "UTC"
    path = tmp_path / "lpmon.toml"
    path.write_text(MODELS + '[airflow]\ntimezone = "Mars/Olympus"\npartition_marker = "../x"\n'
                             'partition_poke_s = 0\npartition_wait_s = -1\n')
    with pytest.raises(ConfigError) as err:
        load(path, environ={})
    message = str(err.value)
    assert "airflow.timezone: not a known time zone (e.g. UTC, Europe/Paris), got 'Mars/Olympus'" in message
    assert "airflow.partition_marker: a file name inside the partition, got '../x'" in message
    assert "airflow.partition_poke_s: expected at least 1 (seconds), got 0" in message
    assert "airflow.partition_wait_s: expected a non-negative integer, got -1" in message
    path.write_text(MODELS + '[airflow]\ntimezone = "Europe/Paris"\npartition_wait_s = 7200\n')
    settings = load(path, environ={}).airflow
    assert (settings.timezone, settings.partition_wait_s, settings.partition_marker) == ("Europe/Paris", 7200,
                                                                                         "_SUCCESS")


def test_the_models_task_says_when_a_day_is_before_the_start_or_has_no_traffic(tmp_path, monkeypatch, airflow_db):
    from lpmon.airflow import tasks as dagtasks

    config_path = dag_world(tmp_path, ["stable"], days=2)  # traffic 2026-11-01 and 02; start_date 2026-11-01
    monkeypatch.setenv("LPMON_CONFIG", str(config_path))
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    at = dt.datetime(2026, 10, 20, tzinfo=dt.timezone.utc)
    with LogLines() as log:
        assert dagtasks.models({"data_interval_start": at}) == ["stable"]
    logged = log.text
    assert "2026-10-20 is before [airflow] start_date 2026-11-01" in logged
    assert "stable: no traffic partition for 2026-10-20 (the store has 2026-11-01 to 2026-11-02)" in logged
    assert "alerts of this run will be recorded as not sent: no SMTP connection 'smtp_default'" in logged
    with LogLines() as log:
        assert dagtasks.models({"data_interval_start": at + dt.timedelta(days=12)}) == ["stable"]
    logged = log.text
    assert "before [airflow] start_date" not in logged and "no traffic partition" not in logged
