"""Faults, with real process deaths: a worker SIGKILLed while scoring, recalibrating,
promoting or reporting; two runs of one day at once; the day lock held by a
process that dies. After each: what the store holds, and that the retry
(a plain rerun, as Airflow's task retry does) leaves exactly the rows of an
uninterrupted run.

The world is sudden_shift: days 0-6 are run once (module fixture), and day 7
(the traffic shifts) is the first DEGRADED day, so its run recalibrates and
promotes plan v2.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.pipeline import day_lock, open_store, run_day
from lpmon.store import StoreError, init_store
from support import REPO
from support.world import snapshot_rows

# serial: these tests restart PostgreSQL and SIGKILL runs (make test runs them alone, last).
pytestmark = [pytest.mark.faults, pytest.mark.serial]

MODEL, DAYS = "sudden_shift", [f"2026-11-{d:02d}" for d in range(1, 9)]
DEGRADED_DAY = DAYS[7]
DRIVER = str(REPO / "tests" / "support" / "fault_driver.py")


def write_config(root: Path, world: Path, store: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "lpmon.toml"
    path.write_text(
        f'store = "{store}"\nplans_dir = "{root / "plans"}"\nwork_dir = "{root / "work"}"\n\n'
        # the test worlds' 20-day false-alarm budget, one look a day (single look at 1.96 SE): the shift
        # is DEGRADED on its day by its first 10,000 examples (all 50,000 would leave it WARN)
        "[defaults]\nsample_size = 10000\nmax_sample_size = 10000\nmin_examples = 1000\n"
        "sequential_run_length_days = 20\n\n"
        f'[models.{MODEL}]\ntraffic = "{world / "traffic" / MODEL}"\n'
        f'snapshot = "{world / "models" / MODEL / "snapshot"}"\n'
    )
    init_store(store)  # as `lpmon init` does (a copied store: up to date already)
    return path


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The world, and a SQLite store holding days 0-6 (copied by each test)."""
    world = tmp_path_factory.mktemp("world")
    write_world(world, WorldConfig(MODEL, days=14, seed=1, examples_per_day=50_000))
    base = tmp_path_factory.mktemp("history")
    config = load(write_config(base, world, f"sqlite:///{base / 'state.db'}"), environ={})
    for day in DAYS[:7]:
        run_day(config, MODEL, day)
    open_store(config).db.engine.dispose()
    return world, base / "state.db"


def sqlite_copy(history, root: Path) -> Path:
    world, db = history
    root.mkdir(parents=True)
    with sqlite3.connect(db) as source, sqlite3.connect(root / "state.db") as target:
        source.backup(target)  # WAL included (a file copy may miss what is not checkpointed)
    return write_config(root, world, f"sqlite:///{root / 'state.db'}")


@pytest.fixture(scope="module")
def expected(history, tmp_path_factory):
    """The rows after an uninterrupted run of the degraded day."""
    config = load(sqlite_copy(history, tmp_path_factory.mktemp("twin") / "run"), environ={})
    result = run_day(config, MODEL, DEGRADED_DAY)
    assert result.status == "DEGRADED" and result.new_plan_version == 2, result
    store = open_store(config)
    rows = snapshot_rows(store, MODEL)
    store.db.engine.dispose()
    return rows


def driver(point: str, config_path: Path, day: str = DEGRADED_DAY, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, DRIVER, point, str(config_path), MODEL, day],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def active_versions(store) -> list[int]:
    return [r["version"] for r in store.rows("plans", MODEL) if r["status"] == "active"]


@pytest.mark.parametrize("point", ["scoring", "recalibration", "promotion", "report"])
def test_a_worker_killed_mid_run_leaves_one_plan_and_its_retry_completes(history, expected, tmp_path, point):
    config_path = sqlite_copy(history, tmp_path / "run")
    config = load(config_path, environ={})
    process = driver(point, config_path)
    _, err = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, err

    store = open_store(config)
    # Killed: the old plan or the new one is active, never none or two.
    assert active_versions(store) in ([1], [2])
    if point == "promotion":  # the promotion transaction died with the process
        assert active_versions(store) == [1]
    # No half-written day: the run row says RUNNING (plan in force fixed), no decision.
    run = [r for r in store.rows("runs", MODEL) if r["logical_date"] == DEGRADED_DAY]
    assert [r["status"] for r in run] == ["RUNNING"] and run[0]["plan_version"] == 1
    assert not [r for r in store.rows("decisions", MODEL) if r["logical_date"] == DEGRADED_DAY]

    result = run_day(config, MODEL, DEGRADED_DAY)  # the retry
    assert result.status == "DEGRADED" and result.new_plan_version == 2
    assert snapshot_rows(store, MODEL) == expected
    assert active_versions(store) == [2]
    store.db.engine.dispose()


def test_two_runs_of_the_same_day_at_once_give_one_result(history, expected, tmp_path):
    """A manual run during a backfill: both processes finish, the day has one
    result and one promotion, as if it had run once."""
    config_path = sqlite_copy(history, tmp_path / "run")
    command = [
        sys.executable,
        "-m",
        "lpmon.cli",
        "run",
        "--config",
        str(config_path),
        "--model",
        MODEL,
        "--date",
        DEGRADED_DAY,
    ]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    store = open_store(load(config_path, environ={}))
    assert snapshot_rows(store, MODEL) == expected
    promoted = [r for r in store.rows("plans", MODEL) if r["logical_date"] == DEGRADED_DAY]
    assert [(r["version"], r["status"]) for r in promoted] == [(2, "active")]
    store.db.engine.dispose()


def test_the_day_lock_is_exclusive_and_freed_when_its_holder_is_killed(history, tmp_path, database_url):
    world, _ = history
    config_path = write_config(tmp_path, world, database_url)
    config = load(config_path, environ={})
    holder = driver("hold", config_path, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        store = open_store(config)
        with pytest.raises(StoreError, match=f"{MODEL}@{DEGRADED_DAY}: another run"):
            with store.db.day_lock(MODEL, DEGRADED_DAY, timeout_s=1.0):
                pass
        with store.db.day_lock(MODEL, DAYS[6], timeout_s=1.0):  # other days are not blocked
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        started = time.monotonic()
        with day_lock(config, MODEL, DEGRADED_DAY):  # the dead holder's lock is gone
            assert time.monotonic() - started < 10
        store.db.engine.dispose()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_worker_killed_mid_promotion_on_postgresql(history, expected, tmp_path, postgres_url):
    """The same kill on the PostgreSQL store: the server rolls the open promotion back."""
    world, _ = history
    config_path = write_config(tmp_path, world, postgres_url)
    config = load(config_path, environ={})
    for day in DAYS[:7]:
        run_day(config, MODEL, day)
    process = driver("promotion", config_path)
    _, err = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, err
    store = open_store(config)
    assert active_versions(store) == [1]
    run_day(config, MODEL, DEGRADED_DAY)
    assert snapshot_rows(store, MODEL) == expected and active_versions(store) == [2]
    store.db.engine.dispose()


# --- PostgreSQL restarted under a run ------------------------------------------------------


def restart_postgres(mode: str = "restart") -> None:
    """Restart (or stop/start) the PostgreSQL service the tests use, as an operator or a failover would."""
    version = sorted(os.listdir("/etc/postgresql"))[0]
    up = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0
    if mode == "start" and up:
        return
    fast = [] if mode == "start" else ["-m", "fast"]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", mode, *fast], check=True, capture_output=True
    )
    if mode != "stop":
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-t", "30"], check=True, capture_output=True)


@pytest.fixture
def postgres_history(history, tmp_path, postgres_url):
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("the PostgreSQL service is not managed on this machine (no /etc/postgresql)")
    world, _ = history
    config = load(write_config(tmp_path, world, postgres_url), environ={})
    for day in DAYS[:7]:
        run_day(config, MODEL, day)
    yield config
    restart_postgres("start")  # whatever the test did, the service is up for the next one


def test_postgresql_restarted_between_steps_the_run_completes(postgres_history, expected, monkeypatch):
    """Pooled connections died with the server: they are replaced (pre-ping), the run goes on."""
    from lpmon.pipeline import run as pipeline  # run_day calls the steps by their names there

    compare_step = pipeline.compare_step

    def restart_then_compare(config, work):
        restart_postgres()
        return compare_step(config, work)

    monkeypatch.setattr(pipeline, "compare_step", restart_then_compare)
    result = run_day(postgres_history, MODEL, DEGRADED_DAY)
    assert result.status == "DEGRADED" and result.new_plan_version == 2
    store = open_store(postgres_history)
    assert snapshot_rows(store, MODEL) == expected
    store.db.engine.dispose()


def test_postgresql_restarted_inside_the_report_transaction_fails_then_the_retry_completes(
    postgres_history, expected, monkeypatch
):
    from lpmon.store import StateStore

    record_decision = StateStore.record_decision

    def restart_then_record(self, *args, **kwargs):
        restart_postgres()
        return record_decision(self, *args, **kwargs)

    monkeypatch.setattr(StateStore, "record_decision", restart_then_record)
    with pytest.raises(Exception, match="terminat|closed|connection"):
        run_day(postgres_history, MODEL, DEGRADED_DAY)
    monkeypatch.undo()
    store = open_store(postgres_history)
    run = [r for r in store.rows("runs", MODEL) if r["logical_date"] == DEGRADED_DAY]
    # The report's transaction was rolled back whole; the first run's row says it failed, not RUNNING (issue 28).
    assert [r["status"] for r in run] == ["failed"] and run[0]["message"].startswith("failed: "), run
    assert active_versions(store) == [2]  # promoted before the report: the retry keeps it
    run_day(postgres_history, MODEL, DEGRADED_DAY)  # Airflow's retry
    assert snapshot_rows(store, MODEL) == expected
    store.db.engine.dispose()


def test_postgresql_down_is_a_clear_error_and_the_run_after_it_is_unaffected(postgres_history, expected):
    url = postgres_history.store
    restart_postgres("stop")
    try:
        with pytest.raises(StoreError, match="the state store is unreachable") as error:
            run_day(postgres_history, MODEL, DEGRADED_DAY)
        assert url.rsplit("/", 1)[-1] in str(error.value)
    finally:
        restart_postgres("start")
    run_day(postgres_history, MODEL, DEGRADED_DAY)
    store = open_store(postgres_history)
    assert snapshot_rows(store, MODEL) == expected
    store.db.engine.dispose()


# --- the day lock across a lost PostgreSQL session --------------------------------------------


def held_lock():
    """The advisory day lock this thread holds (lpmon.store.database keeps them per thread)."""
    import threading

    from lpmon.store import database

    (lock,) = database._HELD[threading.get_ident()]
    return lock


def terminate(url: str, pid: int) -> None:
    import psycopg

    from conftest import PG_ADMIN

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))  # waits until it is gone


def lock_is_held_elsewhere(store) -> bool:
    try:
        with store.db.day_lock(MODEL, DEGRADED_DAY, timeout_s=0.5):
            return False
    except StoreError:
        return True


def test_the_day_lock_is_re_taken_when_its_session_dies(postgres_url):
    """The lock's session was killed (as a restart or an admin would): the next
    commit of the run re-takes the lock first, and the run goes on holding it."""
    import threading

    init_store(postgres_url)
    from lpmon.store import Database, StateStore

    store = StateStore(Database(postgres_url))
    with store.db.day_lock(MODEL, DEGRADED_DAY):
        lock = held_lock()
        first = lock.live
        terminate(postgres_url, first.connection.dbapi_connection.info.backend_pid)
        store.register_model(MODEL)  # a commit: the lock is checked, found lost, re-taken
        assert lock.live is not None and lock.live is not first and not lock.lost
        other = {}
        thread = threading.Thread(target=lambda: other.update(held=lock_is_held_elsewhere(store)))
        thread.start()
        thread.join()
        assert other["held"]  # another run of the day still has to wait
    assert not lock_is_held_elsewhere(store)  # released at the end
    store.db.engine.dispose()


def test_a_run_whose_lock_was_taken_meanwhile_stops_before_writing(postgres_url):
    import psycopg

    init_store(postgres_url)
    from lpmon.store import Database, StateStore

    store = StateStore(Database(postgres_url))
    store.register_model(MODEL)
    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as rival:
        with store.db.day_lock(MODEL, DEGRADED_DAY):
            lock = held_lock()
            terminate(postgres_url, lock.live.connection.dbapi_connection.info.backend_pid)
            assert rival.execute("SELECT pg_try_advisory_lock(%s)", (lock.number,)).fetchone()[0]
            with pytest.raises(
                StoreError,
                match=f"{MODEL}@{DEGRADED_DAY}: the day's lock was lost .*another run "
                "of the same day holds it now; this run stopped before writing",
            ):
                store.record_run(MODEL, DEGRADED_DAY, "RUNNING")
            with pytest.raises(StoreError, match="the day's lock was lost"):
                store.record_run(MODEL, DEGRADED_DAY, "RUNNING")  # and every later commit
    assert store.rows("runs", MODEL) == []  # nothing was written without the lock
    store.db.engine.dispose()


def test_the_day_lock_survives_a_postgresql_restart_in_the_middle_of_a_run(postgres_history, expected, monkeypatch):
    """A real restart between the steps of the DEGRADED day: the run completes with
    the rows of an uninterrupted run, holding the lock again once it commits."""
    from lpmon.pipeline import run as pipeline  # run_day calls the steps by their names there

    compare_step, seen = pipeline.compare_step, {}

    def restart_then_compare(config, work):
        seen["session"] = held_lock().live
        restart_postgres()
        return compare_step(config, work)

    from lpmon.pipeline.lifecycle import PlanLifecycle

    real_propose = PlanLifecycle.propose

    def promote_and_look(self, *args, **kwargs):
        outcome = real_propose(self, *args, **kwargs)  # commits: the lock was re-taken before them
        lock = held_lock()
        seen["lock"] = lock.live is not None and lock.live is not seen["session"] and not lock.lost
        return outcome

    monkeypatch.setattr(pipeline, "compare_step", restart_then_compare)
    monkeypatch.setattr(PlanLifecycle, "propose", promote_and_look)
    result = run_day(postgres_history, MODEL, DEGRADED_DAY)
    assert result.status == "DEGRADED" and result.new_plan_version == 2 and seen["lock"]
    store = open_store(postgres_history)
    assert snapshot_rows(store, MODEL) == expected
    store.db.engine.dispose()
