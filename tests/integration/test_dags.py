"""The DAGs: they parse fast and light, have the intended shape, and real
dag.test() runs give the store's rows and the emails (through a real SMTP
server) that the library promises."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

from lpmon.config import load
from lpmon.pipeline import open_store, run_day
from support import REPO
from support.dags import run_dag
from support.world import dag_world, snapshot_rows

DAGS = REPO / "dags"
START = dt.date(2026, 11, 1)
HEAVY = (
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "matplotlib",
    "lpmon.pipeline",
    "lpmon.airflow.tasks",
    "lpmon.airflow.context",
    "lpmon.airflow.failures",
    "lpmon.model",
    "lpmon.store",
)


def day(i: int) -> dt.date:
    return START + dt.timedelta(days=i)


def promoted_events(dr) -> list[dict]:
    """The extras of this run's lpmon_plan_promoted asset events, from Airflow's metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = (
            session.execute(
                select(AssetEvent.extra)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.name == "lpmon_plan_promoted", AssetEvent.source_run_id == dr.run_id)
                .order_by(AssetEvent.id)
            )
            .scalars()
            .all()
        )
    return [{k: v for k, v in extra.items() if k in ("model", "version", "day", "path")} for extra in rows]


# --- parsing and shape --------------------------------------------------------------------


def test_every_dag_file_parses_in_under_a_second_without_heavy_imports(tmp_path):
    script = f"""
import json, runpy, sys, time
import airflow.sdk  # the SDK itself is shared by every file; time the files
out = {{}}
for path in sorted(__import__("pathlib").Path({str(DAGS)!r}).glob("lpmon_*.py")):
    started = time.perf_counter()
    runpy.run_path(str(path))
    out[path.name] = time.perf_counter() - started
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"seconds": out, "heavy": heavy}}))
"""
    env = dict(os.environ, LPMON_CONFIG=str(tmp_path / "missing.toml"), PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["seconds"]) == {"lpmon_monitor.py", "lpmon_recalibrate.py", "lpmon_onboard.py"}
    assert all(seconds < 1.0 for seconds in report["seconds"].values()), report
    assert report["heavy"] == []


def test_reading_the_airflow_table_imports_no_sqlalchemy(tmp_path):
    """What a DAG file needs of lpmon (lpmon.airflow.defaults) loads neither the store nor sqlalchemy."""
    path = tmp_path / "lpmon.toml"
    path.write_text('[models.m]\ntraffic = "t"\nsnapshot = "s"\n\n[airflow]\ntimezone = "Europe/Paris"\n')
    script = (
        "import sys; from lpmon.config import airflow_settings; s = airflow_settings(); "
        "print(s.timezone, sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'airflow') "
        "or m.startswith('lpmon.store')))"
    )
    env = dict(os.environ, LPMON_CONFIG=str(path), PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["Europe/Paris", "[]"]


def test_dag_shapes_and_settings_from_the_config(dagbag, tmp_path):
    path = tmp_path / "lpmon.toml"
    path.write_text(
        '[models.m]\ntraffic = "t"\nsnapshot = "s"\n\n[airflow]\nrecalibrate_schedule = "0 4 * * 1"\n'
        'start_date = "2026-10-01"\ntask_retries = 3\ntimezone = "Europe/Paris"\n'
    )
    bag = dagbag(path)
    monitor, recalibrate, onboard = (bag.dags[d] for d in ("lpmon_monitor", "lpmon_recalibrate", "lpmon_onboard"))
    assert monitor.catchup and monitor.max_active_runs == 1
    assert monitor.start_date == pendulum.datetime(2026, 10, 1, tz="Europe/Paris")
    assert {t.task_id for t in monitor.tasks} == {"turn", "models", "sample_groups", "sample_part"} | {
        f"monitor.{name}"
        for name in (
            "partition",
            "sample",
            "score",
            "compare",
            "decide",
            "record",
            "recalibrate",
            "fallback",
            "report",
            "alert",
            "publish",
        )
    }
    task = monitor.get_task
    assert task("monitor.partition").downstream_task_ids == {"monitor.sample"}
    assert task("monitor.partition").mode == "reschedule"
    assert task("sample_groups").downstream_task_ids == {"sample_part"}
    assert task("monitor.sample").upstream_task_ids == {"models", "monitor.partition", "sample_part"}
    assert task("monitor.sample").trigger_rule == "none_failed"  # a day not split skips sample_part
    assert task("turn").downstream_task_ids == {"models"}  # a run waits for the earlier runs
    assert task("turn").mode == "reschedule" and task("turn").upstream_task_ids == set()
    assert task("monitor.decide").downstream_task_ids == {"monitor.record", "monitor.recalibrate"}
    assert task("monitor.recalibrate").downstream_task_ids == {"monitor.fallback", "monitor.report"}
    assert task("monitor.report").upstream_task_ids == {
        "models",
        "monitor.record",
        "monitor.recalibrate",
        "monitor.fallback",
    }
    assert task("monitor.report").downstream_task_ids == {"monitor.alert", "monitor.publish"}
    assert task("monitor.report").trigger_rule == "none_failed_min_one_success"
    assert [a.name for a in task("monitor.publish").outlets] == ["lpmon_plan_promoted"]
    assert task("monitor.sample").get_closest_mapped_task_group().group_id == "monitor"
    assert all(t.retries == 3 and t.on_failure_callback for t in monitor.tasks)
    assert all(t.map_index_template for t in monitor.tasks if t.task_id not in ("turn", "models", "sample_groups"))
    assert recalibrate.timetable.expression == "0 4 * * 1" and not recalibrate.catchup
    assert [a.name for a in recalibrate.get_task("publish").outlets] == ["lpmon_plan_promoted"]
    assert [a.name for a in onboard.timetable.asset_condition.objects] == ["lpmon_model_snapshot"]
    # Data intervals, not trigger times: the run for 2026-11-04 (Paris) starts once that day has ended.
    # (the scheduler's own class, which the DAG's SDK timetable becomes once serialized)
    from airflow.timetables.interval import CronDataIntervalTimetable

    assert type(monitor.timetable).__name__ == "CronDataIntervalTimetable"
    scheduled = CronDataIntervalTimetable(monitor.timetable.expression, monitor.timetable.timezone)
    start = pendulum.datetime(2026, 11, 4, tz="Europe/Paris")
    interval = scheduled.infer_manual_data_interval(run_after=start.add(days=1, hours=3))
    assert (interval.start, interval.end) == (start, start.add(days=1))


def test_without_a_start_date_there_is_no_catchup_and_no_2026(dagbag, tmp_path):
    """The default runs from the last complete day on (catchup would need a start);
    backfills still cover any day: no task has a start date that hides it."""
    path = tmp_path / "lpmon.toml"
    path.write_text('[models.m]\ntraffic = "t"\nsnapshot = "s"\n')
    monitor = dagbag(path).dags["lpmon_monitor"]
    assert monitor.start_date is None and not monitor.catchup
    assert all(t.start_date is None for t in monitor.tasks)


# --- dag.test() runs ----------------------------------------------------------------------


@pytest.mark.slow
def test_stable_days_through_the_dag_equal_the_library_and_send_nothing(dagbag, smtp_server, tmp_path):
    config_path = dag_world(tmp_path / "dag", ["stable"], days=2)
    twin_path = dag_world(tmp_path / "lib", ["stable"], days=2)
    bag = dagbag(config_path)
    for i in range(2):
        dr, states = run_dag(bag, "lpmon_monitor", day(i))
        assert dr.state == "success", states
        assert states[("monitor.record", 0)] == "success"
        assert states[("monitor.recalibrate", 0)] == "skipped" and states[("monitor.fallback", 0)] == "skipped"
        # The first day onboards (serving loads the new plan: an asset event); later days promote nothing.
        assert states[("monitor.publish", 0)] == ("success" if i == 0 else "skipped")
        rendered = {
            ti.rendered_map_index for ti in dr.get_task_instances() if ti.state == "success" and ti.map_index >= 0
        }
        assert rendered == {"stable"}, rendered  # map indexes are model names in the UI
        run_day(load(twin_path, environ={}), "stable", day(i))
    config = load(config_path, environ={})
    assert snapshot_rows(open_store(config), "stable") == snapshot_rows(
        open_store(load(twin_path, environ={})), "stable"
    )
    # The one email: onboarding put plan v1 in force (serving loads it); healthy days send nothing.
    assert [m["X-Lpmon-Event"] for m in smtp_server.messages] == [f"stable/{day(0)}/ONBOARDED"]
    report = config.work_dir / "reports" / "stable" / f"{day(1)}.html"
    status = open_store(config).rows("runs", "stable")[-1]["status"]
    assert f"stable 2026-11-02: {status}" in report.read_text() and "data:image/png;base64," in report.read_text()
    assert (config.plans_dir / "stable" / "active.json").exists()
    assert not (config.work_dir / "stable" / str(day(1)) / "arrays.npz").exists()  # cleaned after the report


@pytest.mark.slow
def test_a_day_split_over_file_groups_gives_the_rows_of_a_whole_day(dagbag, tmp_path, monkeypatch):
    """sample_split_rows forced low: the day's five files are drawn in three
    sample_part tasks and merged; the day's rows equal the library's, drawn whole."""
    import pyarrow.parquet as pq

    from lpmon.pipeline.split_day import folder
    from lpmon.traffic import TrafficStore

    config_path = dag_world(tmp_path / "dag", ["stable"], days=1, extra="sample_split_rows = 20000")
    twin_path = dag_world(tmp_path / "lib", ["stable"], days=1)
    config = load(config_path, environ={})
    traffic = TrafficStore(config.model("stable").traffic)
    table = pq.read_table(traffic.files(day(0)))
    traffic.write_day(day(0), table, rows_per_file=10_000, row_group_rows=4_096)
    assert len(traffic.files(day(0))) == 5
    import lpmon.pipeline.context

    real = lpmon.pipeline.context.draw_sample

    def whole(store, day, n, *args):  # (validation's larger draws of the day stay whole)
        assert n != config.model("stable").sample_size, "the split day's sample was drawn whole"
        return real(store, day, n, *args)

    monkeypatch.setattr(lpmon.pipeline.context, "draw_sample", whole)  # (dag.test runs tasks in this process)
    dr, states = run_dag(dagbag(config_path), "lpmon_monitor", day(0))
    monkeypatch.undo()
    assert dr.state == "success", states
    assert [states[("sample_part", i)] for i in range(3)] == ["success"] * 3 and ("sample_part", 3) not in states
    parts = {
        ti.map_index: ti.xcom_pull(task_ids="sample_part", map_indexes=ti.map_index)
        for ti in dr.get_task_instances()
        if ti.task_id == "sample_part"
    }
    assert sorted(p["rows"] for p in parts.values()) == [10_000, 20_000, 20_000] and all(
        p["drawn"] for p in parts.values()
    )
    assert not folder(config, "stable", str(day(0))).exists()  # the groups' files, removed once merged
    run_day(load(twin_path, environ={}), "stable", day(0))
    assert snapshot_rows(open_store(config), "stable") == snapshot_rows(
        open_store(load(twin_path, environ={})), "stable"
    )


@pytest.mark.slow
def test_a_drifting_day_recalibrates_promotes_and_emails_once(dagbag, smtp_server, tmp_path):
    # One look a day (max_sample_size = sample_size): this test is the DAG's recalibrate path.
    # On this world the shifted day's first 10,000 examples call it DEGRADED; all 50,000 of
    # them (dNE 0.12 % [-0.03, 0.27]) do not, so adaptive sampling rightly leaves it WARN.
    config_path = dag_world(tmp_path, ["sudden_shift"], days=14, extra="max_sample_size = 10000")
    config = load(config_path, environ={})
    for i in range(7):  # the quiet days, through the library; traffic shifts on day 7
        run_day(config, "sudden_shift", day(i))
    bag = dagbag(config_path)
    dr, states = run_dag(bag, "lpmon_monitor", day(7))
    assert dr.state == "success", states
    assert states[("monitor.recalibrate", 0)] == "success" and states[("monitor.record", 0)] == "skipped"
    store = open_store(config)
    run = store.rows("runs", "sudden_shift")[-1]
    assert run["logical_date"] == str(day(7)) and run["status"] == "DEGRADED"
    assert store.active_plan("sudden_shift").version == 2
    # Serving-side DAGs learn of the promotion through the lpmon_plan_promoted asset.
    assert states[("monitor.publish", 0)] == "success"
    assert promoted_events(dr) == [
        {
            "model": "sudden_shift",
            "version": 2,
            "day": str(day(7)),
            "path": str(config.plans_dir / "sudden_shift" / "active.json"),
        }
    ]
    subjects = [m["Subject"] for m in smtp_server.messages]  # one mail for the day's two events
    assert len(subjects) == 1 and "NE degraded, new plan promoted" in subjects[0], subjects
    assert "v2 now serving" in smtp_server.messages[0].get_body(("plain",)).get_content().splitlines()[0]
    message = smtp_server.messages[0]
    assert sorted(message.envelope_to) == ["ml-infra@example.com", "oncall@example.com"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    dne = store.rows("run_metrics", "sudden_shift")[-1]["dne_pct"]
    assert f"{dne:.4f} %" in text and f"{dne:.4f} %" in html and "against the 0.05 % gate" in text
    assert "http://airflow.test/dags/lpmon_monitor/runs/" in html and "worst layers by SQNR" in text
    assert "http://airflow.test/lpmon/models/sudden_shift" in text
    images = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert len(images) == 1 and images[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"cid:{images[0]['Content-ID'][1:-1]}" in html
    # A rerun of the day (a retry, a clear in the UI) leaves the rows and sends nothing again.
    before = snapshot_rows(store, "sudden_shift")
    dr, _ = run_dag(bag, "lpmon_monitor", day(7))
    assert dr.state == "success" and len(smtp_server.messages) == 1
    assert snapshot_rows(store, "sudden_shift") == before
    assert {(a["event"], a["status"]) for a in store.rows("alerts", "sudden_shift")} == {
        ("DEGRADED", "sent"),
        ("PROMOTION", "sent"),
    }


@pytest.mark.slow
def test_outliers_fall_back_through_the_dag(dagbag, smtp_server, tmp_path):
    config_path = dag_world(tmp_path, ["outliers"], days=7)
    config = load(config_path, environ={})
    run_day(config, "outliers", day(0))
    dr, states = run_dag(dagbag(config_path), "lpmon_monitor", day(6))
    assert dr.state == "success", states
    assert states[("monitor.fallback", 0)] == "success" and states[("monitor.report", 0)] == "success"
    decision = open_store(config).rows("decisions", "outliers")[-1]
    assert decision["action"] == "FALLBACK"
    events = [m["X-Lpmon-Event"] for m in smtp_server.messages]  # one mail, the day's events grouped
    assert events == [f"outliers/{day(6)}/DEGRADED+PROMOTION+FALLBACK"]
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "precision changes:" in text and ("int8 -> fp16" in text or "int8 -> fp32" in text)


@pytest.mark.slow
def test_a_refusing_mail_server_is_recorded_and_fails_nothing(dagbag, smtp_server, tmp_path, monkeypatch):
    import lpmon.report.notify

    config_path = dag_world(tmp_path, ["outliers"], days=7)
    config = load(config_path, environ={})
    run_day(config, "outliers", day(0))
    smtp_server.refuse = True
    monkeypatch.setattr(lpmon.report.notify.time, "sleep", lambda s: None)  # the backoff, not the behaviour
    dr, states = run_dag(dagbag(config_path), "lpmon_monitor", day(6))
    assert dr.state == "success" and states[("monitor.alert", 0)] == "success"
    alerts = open_store(config).rows("alerts", "outliers")
    assert alerts and all(a["status"] == "failed" and a["attempts"] == 3 and "550" in a["error"] for a in alerts)


@pytest.mark.slow
def test_bad_inputs_are_recorded_alerted_and_the_next_day_is_unaffected(dagbag, smtp_server, tmp_path):
    """A missing partition, a truncated Parquet file and a missing snapshot: each
    day is recorded (INSUFFICIENT_DATA or failed, naming what was wrong), mailed
    once, changes no plan; the DAG run succeeds (a retry would not heal the data:
    rerun the day once it is fixed), and the next day runs as if nothing happened."""
    import shutil

    from lpmon.traffic import TrafficStore

    config_path = dag_world(tmp_path / "dag", ["stable"], days=5)
    twin_path = dag_world(tmp_path / "lib", ["stable"], days=5)
    config, twin = load(config_path, environ={}), load(twin_path, environ={})
    run_day(config, "stable", day(0))
    traffic = TrafficStore(config.model("stable").traffic)
    shutil.rmtree(traffic.partition(day(1)))
    truncated = Path(traffic.files(day(2))[0])
    truncated.write_bytes(truncated.read_bytes()[:5000])
    snapshot = Path(config.model("stable").snapshot)
    snapshot.rename(snapshot.with_name("moved"))
    bag = dagbag(config_path)
    dr, states = run_dag(bag, "lpmon_monitor", day(3))
    snapshot.with_name("moved").rename(snapshot)
    assert dr.state == "success", states
    for i in (1, 2):
        dr, states = run_dag(bag, "lpmon_monitor", day(i))
        assert dr.state == "success", states
    store = open_store(config)
    runs = {r["logical_date"]: r for r in store.rows("runs", "stable")}
    assert runs[str(day(1))]["status"] == "INSUFFICIENT_DATA" and "no traffic for" in runs[str(day(1))]["message"]
    assert runs[str(day(2))]["status"] == "failed" and truncated.name in runs[str(day(2))]["message"]
    assert runs[str(day(3))]["status"] == "failed" and "model snapshot" in runs[str(day(3))]["message"]
    assert [r["version"] for r in store.rows("plans", "stable")] == [1]
    mails = {m["X-Lpmon-Event"]: m for m in smtp_server.messages}
    assert sorted(mails) == [f"stable/{day(1)}/INSUFFICIENT_DATA", f"stable/{day(2)}/FAILED", f"stable/{day(3)}/FAILED"]
    assert truncated.name in mails[f"stable/{day(2)}/FAILED"].get_body(("plain",)).get_content()
    # The next day: as if the bad days had not happened.
    dr, states = run_dag(bag, "lpmon_monitor", day(4))
    assert dr.state == "success", states
    for i in (0, 4):
        run_day(twin, "stable", day(i))
    ours = {r["logical_date"]: r for r in snapshot_rows(store, "stable")["run_metrics"]}
    theirs = {r["logical_date"]: r for r in snapshot_rows(open_store(twin), "stable")["run_metrics"]}
    assert ours[str(day(4))] == theirs[str(day(4))]


@pytest.mark.slow
def test_a_failing_task_sends_a_failure_email_without_the_password(dagbag, smtp_server, tmp_path, capfd):
    import uuid

    from airflow.sdk._shared.secrets_masker import redact

    password = f"pw-{uuid.uuid4().hex}"  # made here: no secret-looking literal in the repository
    unreachable = f"postgresql+psycopg://postgres:{password}@127.0.0.1:5432/lpmon_no_such_database"
    config_path = dag_world(tmp_path, ["stable"], days=1, store=unreachable, init=False)
    dr, states = run_dag(dagbag(config_path), "lpmon_monitor", day(0))
    # The store's password is registered with Airflow's masker, and shows nowhere.
    assert password not in redact(f"connecting to {unreachable}")
    output = capfd.readouterr()
    assert "lpmon_no_such_database" in output.out + output.err and password not in output.out + output.err
    assert all(password not in m.as_string() for m in smtp_server.messages)
    assert dr.state == "failed" and states[("monitor.sample", 0)] == "failed"
    assert len(smtp_server.messages) == 1, [m["Subject"] for m in smtp_server.messages]
    message = smtp_server.messages[0]
    assert message["Subject"] == "[lpmon] task failed: lpmon_monitor.monitor.sample for stable (2026-11-01)"
    assert "lpmon_no_such_database" in message.get_body(("html",)).get_content()
    assert sorted(message.envelope_to) == ["ml-infra@example.com", "oncall@example.com"]


@pytest.mark.slow
def test_proactive_recalibration_promotes_only_a_better_plan_once(dagbag, smtp_server, tmp_path):
    config_path = dag_world(tmp_path, ["gradual_drift"], days=12, extra="gate_pct = 0.5")
    config = load(config_path, environ={})
    for i in (0, 11):  # calibrated on day 0; day 11's traffic has drifted (WARN, no recalibration)
        run_day(config, "gradual_drift", day(i))
    bag = dagbag(config_path)
    dr, states = run_dag(bag, "lpmon_recalibrate", day(11), conf={"day": str(day(11))})
    assert dr.state == "success" and states[("recalibrate", 0)] == "success"
    assert states[("publish", 0)] == "success"
    store = open_store(config)
    proactive = [p for p in store.rows("plans", "gradual_drift") if p["reason"] == "PROACTIVE"]
    assert len(proactive) == 1 and proactive[0]["status"] == "active"
    assert [m["X-Lpmon-Event"] for m in smtp_server.messages] == [f"gradual_drift/{day(11)}/PROMOTION"]
    assert "proactive" in smtp_server.messages[0].get_body(("plain",)).get_content().lower()
    dr, _ = run_dag(
        bag, "lpmon_recalibrate", day(11), conf={"day": str(day(11))}
    )  # again: nothing new, no second email
    assert dr.state == "success" and len(smtp_server.messages) == 1
    assert len([p for p in store.rows("plans", "gradual_drift") if p["reason"] == "PROACTIVE"]) == 1


@pytest.mark.slow
def test_onboarding_from_snapshot_events_builds_one_plan_per_snapshot(tmp_path):
    from types import SimpleNamespace

    from lpmon.airflow import tasks as dagtasks
    from lpmon.model import Model

    config_path = dag_world(tmp_path, ["stable"], days=2)
    os.environ["LPMON_CONFIG"] = str(config_path)
    try:
        event = SimpleNamespace(extra={"model_id": "stable", "day": str(day(0))})
        context = {"triggering_asset_events": {"lpmon_model_snapshot": [event]}, "params": {}}
        assert dagtasks.onboard_from_events(context) == [{"model": "stable", "day": str(day(0)), "active_plan": 1}]
        assert dagtasks.onboard_from_events(context)[0]["active_plan"] == 1  # same snapshot: nothing new
        # Training writes a new snapshot in place: it gets its own plan, promoted over the old one.
        config = load(config_path, environ={})
        model = Model.load(config.model("stable").snapshot)
        first = next(iter(model.weights))  # (a loaded model's tensors are read-only maps)
        model.weights[first] = model.weights[first] * 1.01
        model.save(config.model("stable").snapshot)
        assert dagtasks.onboard_from_events(context)[0]["active_plan"] == 2
        store = open_store(config)
        assert len(store.rows("snapshots", "stable")) == 2
        assert [p["status"] for p in store.rows("plans", "stable")] == ["retired", "active"]
        with pytest.raises(ValueError, match="no model_id"):
            dagtasks.onboard_from_events({"triggering_asset_events": {"a": [SimpleNamespace(extra={})]}})
    finally:
        del os.environ["LPMON_CONFIG"]


@pytest.mark.slow
def test_a_late_partition_without_smtp_is_insufficient_data_recorded_and_green(dagbag, tmp_path, monkeypatch):
    """[airflow] partition_wait_s: a day whose partition never got its marker is
    INSUFFICIENT_DATA once the wait is over; with no smtp_default at all, its alert
    is recorded as not sent (with the fix), and the run is still green."""
    from lpmon.report.notify import NO_CONNECTION

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    config_path = dag_world(tmp_path, ["stable"], days=2)
    config_path.write_text(config_path.read_text().replace("[airflow]\n", "[airflow]\npartition_wait_s = 3600\n"))
    dr, states = run_dag(dagbag(config_path), "lpmon_monitor", day(0))
    assert dr.state == "success", states
    assert states[("monitor.partition", 0)] == "success" and states[("monitor.alert", 0)] == "success"
    store = open_store(load(config_path, environ={}))
    (run,) = store.rows("runs", "stable")
    assert (
        run["status"] == "INSUFFICIENT_DATA"
        and "not complete 3600 s after the day ended (no _SUCCESS)" in run["message"]
    )
    (alert,) = store.rows("alerts", "stable")
    assert alert["event"] == "INSUFFICIENT_DATA" and alert["status"] == "failed"
    assert alert["error"].startswith(f"{NO_CONNECTION} 'smtp_default' (not defined)")


def test_the_partition_wait_waits_for_the_marker_until_its_deadline(tmp_path, monkeypatch):
    from lpmon.airflow import tasks as dagtasks
    from lpmon.traffic import TrafficStore

    config_path = dag_world(tmp_path, ["stable"], days=1)
    config_path.write_text(config_path.read_text().replace("[airflow]\n", "[airflow]\npartition_wait_s = 600\n"))
    monkeypatch.setenv("LPMON_CONFIG", str(config_path))
    monkeypatch.setattr(dagtasks, "label", lambda model_id: None)  # no task context here
    today = dt.date.today().isoformat()
    assert dagtasks.partition_ready("stable", {"params": {"day": today}}) == (False, {})  # the day is not over
    done, value = dagtasks.partition_ready("stable", {"params": {"day": str(day(0))}})  # long over, no marker
    assert done and not value["complete"] and "_SUCCESS" in value["message"]
    traffic = TrafficStore(load(config_path, environ={}).model("stable").traffic)
    Path(traffic.partition(day(0)), "_SUCCESS").write_text("")
    assert dagtasks.partition_ready("stable", {"params": {"day": str(day(0))}}) == (
        True,
        {"complete": True, "waited": True},
    )
