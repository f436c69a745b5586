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
    assert config.store == f"sqlite:///{tmp_path / 'state.db'}" and config.plans_dir == tmp_path / "plans"
    with pytest.raises(ConfigError, match="no model 'nope' \\(models: ctr, feed\\)"):
        config.model("nope")


def test_environment_overrides(tmp_path):
    path = tmp_path / "lpmon.toml"
    path.write_text(GOOD)
    config = load(
        path,
        environ={
            "LPMON_STORE": "postgresql+psycopg://db/lpmon",
            "LPMON_GATE_PCT": "0.2",
            "LPMON_RECIPIENTS": "a@x.io, b@y.io",
        },
    )
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
    for expected in [
        "colour: unknown top-level key",
        "defaults.gate_pct: must be a percentage above 0",
        "models.a.sample_size: expected an integer",
        "models.a.cooldown_days: must be between 1 and",
        "models.a.recipients: not email addresses",
        "models.a.calibration_method: must be one of",
        "models.a.bogus: unknown key",
        "models.a.snapshot: required",
        "models.b.traffic: required",
    ]:
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
    assert set(config.models) == {"stable"} and config.model("stable").traffic.endswith("stable")


def test_work_dir_airflow_table_calibration_days_and_model_ids(tmp_path):
    path = tmp_path / "lpmon.toml"
    path.write_text(GOOD + '\n[airflow]\nrecalibrate_schedule = "0 3 * * 1"\n')
    config = load(path, environ={"LPMON_WORK_DIR": "/shared/work"})
    assert config.work_dir.as_posix() == "/shared/work" and config.airflow.recalibrate_schedule == "0 3 * * 1"
    assert load(path, environ={}).work_dir == tmp_path / "work"
    bad = (
        GOOD
        + """
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
    )
    path.write_text(bad)
    with pytest.raises(ConfigError) as err:
        load(path, environ={})
    message = str(err.value)
    assert "models.../etc: a model id is letters" in message
    assert "models.mse.calibration_days: mse keeps raw values" in message
    assert "airflow.recalibrate_schedule: expected a non-empty string" in message
    assert "airflow.colour: unknown key" in message


# --- settings that cannot reach the wrong place (issue 20) ---------------------------------

MINIMAL = '[models.m]\ntraffic = "t"\nsnapshot = "s"\n'


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql://", "no database named"),
        ("postgresql://u:" + "hunter2@db.example/", "no database named"),  # split: the secret scan reads this file
        ("garbage", "'garbage' is not a database URL"),
        ("foo://x", "unsupported database 'foo'"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+asyncpg://h/db", "unsupported driver 'asyncpg'"),
        ("sqlite://", "a SQLite store needs a file path"),
        ("sqlite:///:memory:", "a SQLite store needs a file path"),
        ("", "the store URL is empty"),
    ],
)
def test_store_urls_are_checked_before_anything_connects(tmp_path, monkeypatch, url, message):
    path = tmp_path / "lpmon.toml"
    path.write_text(MINIMAL)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=f"LPMON_STORE: .*{message}") as error:
        load(path, environ={"LPMON_STORE": url})
    assert "hunter2" not in str(error.value)
    path.write_text(f'store = "{url}"\n' + MINIMAL)
    with pytest.raises(ConfigError, match=f"store: .*{message}"):
        load(path, environ={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lpmon.toml"]  # no file named after the typo


def test_the_cli_refuses_a_bad_store_url_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    path = tmp_path / "lpmon.toml"
    path.write_text(MINIMAL)
    for url in ("garbage", "foo://x", "mysql://u@h/db", "postgresql://"):
        out = subprocess.run(
            [sys.executable, "-m", "lpmon.cli", "status", "--config", str(path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, LPMON_STORE=url),
        )
        assert out.returncode == 1 and "Traceback" not in out.stderr and "LPMON_STORE" in out.stderr, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lpmon.toml"]


def test_a_relative_sqlite_store_is_taken_from_the_config_files_folder(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "lpmon.toml"
    path.write_text('store = "sqlite:///state/lpmon.db"\n' + MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert load(path, environ={}).store == f"sqlite:///{tmp_path / 'conf' / 'state' / 'lpmon.db'}"


def test_config_files_must_be_small_regular_files(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from lpmon.config import MAX_CONFIG_BYTES

    with pytest.raises(ConfigError, match="a directory, not a config file"):
        load(tmp_path, environ={})
    started = time.monotonic()
    with pytest.raises(ConfigError, match="/dev/zero: not a regular file"):
        load("/dev/zero", environ={})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="fifo: not a regular file"):
        load(fifo, environ={})  # no writer: a blocking open would hang here
    assert time.monotonic() - started < 2
    big = tmp_path / "big.toml"
    big.write_text(MINIMAL + "#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="larger than 1,048,576 bytes"):
        load(big, environ={})
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe" + b"x" * 10)
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load(tmp_path / "binary.toml", environ={})
    for target in ("/dev/zero", str(tmp_path)):
        out = subprocess.run(
            [sys.executable, "-m", "lpmon.cli", "status"],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, LPMON_CONFIG=target),
        )
        assert out.returncode == 1 and "Traceback" not in out.stderr and target in out.stderr, out.stderr


@pytest.mark.parametrize("character", ["\x00", "\x1b", "\x7f", "\x85", "\u2028"])
def test_every_control_character_is_refused_in_recipients_and_other_values(tmp_path, character):
    path = tmp_path / "lpmon.toml"
    escaped = f"\\u{ord(character):04X}"
    path.write_text(MINIMAL + f'recipients = ["a{escaped}b@example.com"]\n')
    with pytest.raises(
        ConfigError, match=f"recipients: not email addresses.*control characters U\\+{ord(character):04X}"
    ):
        load(path, environ={})
    with pytest.raises(ConfigError, match="LPMON_RECIPIENTS.recipients: not email addresses"):
        load(_write(tmp_path, MINIMAL), environ={"LPMON_RECIPIENTS": f"ok@example.com,a{character}b@example.com"})
    with pytest.raises(ConfigError, match="models.m.runbook_url: control characters"):
        load(_write(tmp_path, MINIMAL + f'runbook_url = "https://x{escaped}y"\n'), environ={})


def _write(tmp_path, text):
    path = tmp_path / "lpmon.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("size, ok", [(1, False), (99, False), (100, True)])
def test_sample_size_below_the_minimum_is_refused_at_load(tmp_path, size, ok):
    path = _write(tmp_path, MINIMAL + f"sample_size = {size}\n")
    if ok:
        assert load(path, environ={}).model("m").sample_size == size
    else:
        with pytest.raises(ConfigError, match=f"models.m.sample_size: must be between 100 and .*got {size}"):
            load(path, environ={})


@pytest.mark.parametrize(
    "text, cap",
    [
        ("", 10_000),
        ("max_sample_size = 1000\n", 1_000),
        ("max_sample_size = 50000\n", 50_000),
        ("max_sample_size = 999\n", None),
    ],
)
def test_max_sample_size_defaults_to_ten_samples_and_is_at_least_one(tmp_path, text, cap):
    path = _write(tmp_path, MINIMAL + "sample_size = 1000\n" + text)
    if cap:
        assert load(path, environ={}).model("m").sample_cap == cap
    else:
        with pytest.raises(ConfigError, match=r"models.m.max_sample_size: must be between sample_size \(1,000\) and"):
            load(path, environ={})


@pytest.mark.parametrize("value, mode", [("0o640", 0o640), ('"0644"', 0o644), ('"600"', 0o600), (None, None)])
def test_file_mode_of_exported_plans(tmp_path, value, mode):
    text = (f"file_mode = {value}\n" if value else "") + MINIMAL
    assert load(_write(tmp_path, text), environ={}).file_mode == mode


@pytest.mark.parametrize("value", ["0o1777", '"rw-r--r--"', "0o044", "true"])
def test_a_bad_file_mode_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="file_mode: "):
        load(_write(tmp_path, f"file_mode = {value}\n" + MINIMAL), environ={})


def test_traffic_limits_are_settings(tmp_path):
    config = load(_write(tmp_path, MINIMAL + "max_ids_per_row = 500\nts_tolerance_hours = 0.5\n"), environ={})
    assert config.model("m").max_ids_per_row == 500 and config.model("m").ts_tolerance_hours == 0.5
    with pytest.raises(ConfigError, match="max_ids_per_row: must be between 1 and"):
        load(_write(tmp_path, MINIMAL + "max_ids_per_row = 0\n"), environ={})
    with pytest.raises(ConfigError, match="ts_tolerance_hours: must be between 0 and 720"):
        load(_write(tmp_path, MINIMAL + "ts_tolerance_hours = -1\n"), environ={})


HIDDEN = "Hunter" + "2pw"  # put together here: the secret scan reads this file
TYPOS = [
    "postgresql+psycopg:/postgres:" + HIDDEN + "@db.example/lpmon",  # one slash
    "postgresql+psycopg//postgres:" + HIDDEN + "@db.example/lpmon",  # no colon
    "postgresql+psycopg:postgres:" + HIDDEN + "@db.example/lpmon",  # no slashes
    "postgres:" + HIDDEN + "@db.example/lpmon",  # no scheme
    "postgresql+psycopg://postgres:" + HIDDEN,  # no host: the password reads as a port
    "postgresql+psycopg://postgres:" + HIDDEN + "/db.example/lpmon",  # '/' for '@'
    "postgresql+psycopg://postgres:" + "p@" + HIDDEN + "@db.example/lpmon",  # an unquoted '@' in the password
]


@pytest.mark.parametrize("url", TYPOS)
def test_a_store_url_with_a_typo_never_shows_its_password(tmp_path, url):
    """Issue 28: a URL without '://' was printed in full, password included."""
    from lpmon.store.url import masked_url, url_secret

    path = tmp_path / "lpmon.toml"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError) as error:
        load(path, environ={"LPMON_STORE": url})
    assert HIDDEN not in str(error.value) and "LPMON_STORE" in str(error.value)
    path.write_text(f'store = "{url}"\n' + MINIMAL)
    with pytest.raises(ConfigError) as error:
        load(path, environ={})
    assert HIDDEN not in str(error.value)
    assert HIDDEN not in masked_url(url) and HIDDEN in url_secret(url)


def test_the_store_password_is_masked_in_task_logs_whatever_the_url(monkeypatch):
    """The task logs' masker gets the password of a URL that does not parse too."""
    import airflow.sdk.log

    from lpmon.airflow.context import mask_store_password

    masked = []
    monkeypatch.setattr(airflow.sdk.log, "mask_secret", masked.append)
    for url in TYPOS:
        masked.clear()
        mask_store_password(url)
        assert any(HIDDEN in m for m in masked), url
    masked.clear()
    mask_store_password("postgresql+psycopg://postgres@db/lpmon")
    assert masked == []


def test_the_embedding_layout_is_a_setting(tmp_path):
    assert load(_write(tmp_path, MINIMAL), environ={}).model("m").embedding_layout == "prepack"
    config = load(_write(tmp_path, MINIMAL + 'embedding_layout = "tbe"\n'), environ={})
    assert config.model("m").embedding_layout == "tbe"
    with pytest.raises(ConfigError, match='models.m.embedding_layout: must be "prepack" or "tbe", got \'TBE\''):
        load(_write(tmp_path, MINIMAL + 'embedding_layout = "TBE"\n'), environ={})
