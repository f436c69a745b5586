"""A model's days are judged in order, whatever runs them.

Day D is judged (its plan in force fixed, in the score step) under the plan the
days before it left, so its first run takes its turn: it waits while an earlier
day of the model is being judged, then, holding the model's order lock, it fixes
its plan. A run that finds later days judged before D (they started first: two
backfills that overlap, a rerun of an older day) rewinds them (lpmon.store.order)
and judges them again, in order, once D is done. The rows and plans are then
those of one serial pass over the days, however the runs interleaved.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

from lpmon.store import StoreError
from lpmon.store.order import ORDER_LOCK, earlier_in_progress, judged_after, put_back_by, rewind, rewound_after, take

log = logging.getLogger(__name__)


@contextmanager
def turn(d, timeout_s: float = 3600.0, poll_s: float = 0.2):
    """Hold the model's order lock once no earlier day of the model is being judged
    and no later day is in the middle of its judgement; later days judged already
    are rewound first. The caller fixes the day's plan inside (and onboards)."""
    store, model_id, day = d.store, d.work.model_id, d.day
    deadline = time.monotonic() + timeout_s
    while True:
        _wait(lambda: earlier_in_progress(store, model_id, day), deadline, timeout_s, poll_s, model_id, day, "earlier")
        with store.db.day_lock(model_id, ORDER_LOCK, timeout_s=timeout_s):
            if earlier_in_progress(store, model_id, day):
                continue  # an earlier day started meanwhile: its turn comes first
            later = judged_after(store, model_id, day)
            if not any(x["running"] for x in later):
                if later:
                    days = [x["day"] for x in later]
                    log.warning(
                        "lpmon: %s %s: later days were judged first (%s to %s): judging them again after it",
                        model_id,
                        day,
                        days[0],
                        days[-1],
                    )
                    rewind(store, model_id, day, days)
                take(store, model_id, day)
                yield
                return
        # A later day is in the middle of its judgement: let it finish, then rewind it.
        _wait(
            lambda: [x["day"] for x in judged_after(store, model_id, day) if x["running"]],
            deadline,
            timeout_s,
            poll_s,
            model_id,
            day,
            "later",
        )


def _wait(blocking, deadline: float, timeout_s: float, poll_s: float, model_id: str, day: str, which: str) -> None:
    while True:
        days = blocking()
        if not days:
            return
        if time.monotonic() > deadline:
            raise StoreError(
                f"{model_id} {day}: waited {timeout_s:.0f} s for the run of the {which} "
                f"day{'s' if len(days) > 1 else ''} {', '.join(days)} to finish; it may be hung: "
                "stop it (its day then waits for a rerun), or wait and rerun this day"
            )
        time.sleep(poll_s)


def check_not_put_back(store, model_id: str, day: str) -> None:
    """Before a day's rows are written: refuse (StoreError) if an earlier day's first
    run put this day back while this run was judging it (an Airflow run between its
    tasks holds no lock): that run judges it again, after itself."""
    earlier = put_back_by(store, model_id, day)
    if earlier:
        raise StoreError(
            f"{model_id} {day}: {earlier} was judged for the first time while this run was judging {day}, "
            f"so {day} was put back; the run of {earlier} judges it again: nothing of this run is written"
        )


def judge_rewound(config, store, model_id: str, day: str, run_day) -> list[str]:
    """Judge again, oldest first, the later days that judging `day` rewound, each with
    run_day(config, model_id, day) (lpmon.pipeline.run); returns them."""
    done: list[str] = []
    while True:
        days = rewound_after(store, model_id, day)
        if not days:
            return done
        if days[0] in done:
            raise StoreError(f"{model_id} {days[0]}: judged again after {day} but still rewound: rerun {days[0]}")
        log.info("lpmon: %s: judging %s again, after %s", model_id, days[0], day)
        run_day(config, model_id, days[0])
        done.append(days[0])
