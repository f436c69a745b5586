"""Airflow in this process, for `lpmon demo`: the DAG folder, the real
lpmon_monitor DAG parsed by Airflow's DagBag, and one dag.test() per day with
Airflow's task logs kept off the terminal."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path


def dags_folder() -> Path:
    """$LPMON_DAGS_FOLDER, else the repository's dags/ (an editable or source install)."""
    folder = Path(os.environ.get("LPMON_DAGS_FOLDER", Path(__file__).resolve().parents[2] / "dags"))
    if not (folder / "lpmon_monitor.py").exists():
        raise FileNotFoundError(f"{folder}: no lpmon_monitor.py; set LPMON_DAGS_FOLDER to lpmon's dags/ folder")
    return folder


@contextmanager
def quiet(log: Path):
    """Airflow's task logs go to a file, not the terminal (file descriptors 1 and 2)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def load_dag(dag_id: str, folder: Path, log: Path):
    """The DAG as Airflow parses it from the folder; an import error is raised, not logged."""
    with quiet(log):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(folder))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag.dags[dag_id]


def test_day(dag, day, log: Path) -> str:
    """Run the DAG once with dag.test() for `day` (the run made once the day ended:
    its data interval is the day); the run's state."""
    import pendulum

    with quiet(log):
        after = pendulum.datetime(day.year, day.month, day.day, tz="UTC").add(days=1)
        return dag.test(logical_date=after).state
