"""A worker that dies: runs `lpmon run` for one model and day in this process
and kills itself with SIGKILL at a chosen point, the way the OOM killer or a
lost node ends an Airflow task (no exception handler, no finally, no flush).

    python fault_driver.py POINT CONFIG MODEL DAY

POINT is one of:
  scoring        while the quantized model scores the sample (the day's RUNNING row is written)
  recalibration  right after the candidate plan is stored, before it is validated as promoted
  promotion      inside the promotion transaction, after the old plan is retired
  report         inside the report transaction, after the run row is written
  hold           take the day's lock, print "locked", and sleep (for lock tests)
"""

import os
import signal
import sys
import time

import sqlalchemy as sa


def die(*_args, **_kwargs):
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def die_after_statement(prefix: str) -> None:
    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith(prefix):
            die()

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", listener)


def main(point: str, config_path: str, model_id: str, day: str) -> int:
    from lpmon import pipeline
    from lpmon.pipeline import steps
    from lpmon.cli import main as lpmon_main
    from lpmon.config import load
    from lpmon.store import StateStore

    if point == "scoring":
        steps.forward_quantized = die
    elif point == "recalibration":
        add_candidate = StateStore.add_candidate

        def add_then_die(self, *args, **kwargs):
            add_candidate(self, *args, **kwargs)
            die()

        StateStore.add_candidate = add_then_die
    elif point == "promotion":
        die_after_statement("UPDATE plans SET status = 'retired'")
    elif point == "report":
        die_after_statement("INSERT INTO decisions")
    elif point == "hold":
        with pipeline.day_lock(load(config_path), model_id, day):
            print("locked", flush=True)
            time.sleep(600)
        return 0
    else:
        raise SystemExit(f"unknown point {point!r}")
    return lpmon_main(["run", "--config", config_path, "--model", model_id, "--date", day])


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
