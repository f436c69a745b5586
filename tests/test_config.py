import pytest

from lpmon.config import ConfigError, load

GOOD = """
store = "sqlite:///state.db"

[defaults]
gate_pct = 0.1
recipients = ["oncall@example.com"]

[models.ctr]
traffic = "traffic/ctr"
snapshot = "/abs/snapshot"
sample_size = 5000

[models.feed]
traffic = "s3://bucket/feed"
snapshot = "models/feed"
gate_pct = 0.02
"""


def test_defaults_overrides_and_paths(tmp_path):
    path = tmp_path / "lpmon.toml"
    path.write_text(GOOD)
    config = load(path, environ={})
    ctr, feed = config.model("ctr"), config.model("feed")
    assert ctr.gate_pct == 0.1 and feed.gate_pct == 0.02
    assert ctr.sample_size == 5000 and feed.sample_size == 200_000
    assert ctr.recipients == ("oncall@example.com",)
    assert ctr.traffic == str(tmp_path / "traffic/ctr") and ctr.snapshot == "/abs/snapshot"
    assert feed.traffic == "s3://bucket/feed"
    assert config.store == "sqlite:///state.db" and config.plans_dir == tmp_path / "plans"
    with pytest.raises(ConfigError, match="no model 'nope' \\(models: ctr, feed\\)"):
        config.model("nope")


def test_environment_overrides(tmp_path):
    path = tmp_path / "lpmon.toml"
    path.write_text(GOOD)
    config = load(path, environ={"LPMON_STORE": "postgresql+psycopg://db/lpmon",
                                 "LPMON_GATE_PCT": "0.2", "LPMON_RECIPIENTS": "a@x.io, b@y.io"})
    assert config.store == "postgresql+psycopg://db/lpmon"
    assert config.model("ctr").gate_pct == 0.2 and config.model("feed").gate_pct == 0.02
    assert config.model("ctr").recipients == ("a@x.io", "b@y.io")


def test_every_problem_is_listed(tmp_path):
    path = tmp_path / "lpmon.toml"
    path.write_text("""
colour = "red"
[defaults]
gate_pct = -1
[models.a]
traffic = "t"
sample_size = "many"
cooldown_days = 0
recipients = ["not-an-address"]
calibration_method = "magic"
bogus = 1
[models.b]
snapshot = "s"
""")
    with pytest.raises(ConfigError) as err:
        load(path, environ={})
    message = str(err.value)
    for expected in ["colour: unknown top-level key", "defaults.gate_pct: must be a percentage above 0",
                     "models.a.sample_size: expected an integer", "models.a.cooldown_days: must be between 1 and",
                     "models.a.recipients: not email addresses", "models.a.calibration_method: must be one of",
                     "models.a.bogus: unknown key", "models.a.snapshot: required", "models.b.traffic: required"]:
        assert expected in message, expected


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "nope.toml", environ={})
    (tmp_path / "bad.toml").write_text("[models\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path / "bad.toml", environ={})


def test_world_config_loads(tmp_path):
    from lpmon import cli

    assert cli.main(["world", "--root", str(tmp_path), "--days", "1", "--examples-per-day", "500"]) == 0
    config = load(tmp_path / "lpmon.toml", environ={})
    assert set(config.models) == {"stable"} and config.model("stable").scenario == "stable"


def test_work_dir_airflow_table_calibration_days_and_model_ids(tmp_path):
    path = tmp_path / "lpmon.toml"
    path.write_text(GOOD + '\n[airflow]\nrecalibrate_schedule = "0 3 * * 1"\n')
    config = load(path, environ={"LPMON_WORK_DIR": "/shared/work"})
    assert config.work_dir.as_posix() == "/shared/work" and config.airflow.recalibrate_schedule == "0 3 * * 1"
    assert load(path, environ={}).work_dir == tmp_path / "work"
    bad = GOOD + """
[models."../etc"]
traffic = "t"
snapshot = "s"

[models.mse]
traffic = "t"
snapshot = "s"
calibration_method = "mse"
calibration_days = 7

[airflow]
recalibrate_schedule = 3
colour = "blue"
"""
    path.write_text(bad)
    with pytest.raises(ConfigError) as err:
        load(path, environ={})
    message = str(err.value)
    assert "models.../etc: a model id is letters" in message
    assert "models.mse.calibration_days: mse keeps raw values" in message
    assert "airflow.recalibrate_schedule: expected a non-empty string" in message
    assert "airflow.colour: unknown key" in message
