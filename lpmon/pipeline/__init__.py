"""The daily job, as plain functions of (model, logical date). The DAGs only call these.

One day is a chain of steps (lpmon.pipeline.steps) over a DayWork (lpmon.pipeline.daywork):

    sample -> score -> compare -> decide -> record | recalibrate [-> fallback] -> report

`sample` draws the day's sample; `score` runs fp32 and the plan in force over
it (onboarding the model first if it has no active plan), measures per-layer
SQNR and saturation, and observes every FC layer's input for calibration;
while the day's verdict is close it scores more of the day's traffic, look by
look (lpmon.pipeline.adaptive), so that everything after it works on every
example the day scored; `compare` and `decide` apply lpmon.metrics and lpmon.policy; `record` handles
the healthy path (and the retry of fallen-back layers after a healthy streak);
`recalibrate` builds a candidate from the calibration half of the sample
(merged with the last `calibration_days` days' stored statistics) and
validates it on the evaluation half; `fallback` moves layers up the precision
ladder when the candidate does not hold; `report` writes the day's rows in one
transaction and exports the active plan. `run_day` chains them in memory.

Idempotent: the plan in force for a day is the one its first run used (kept
on the run's row, written before anything is promoted), candidate plans are
stored once per (model, day, plan), promotion is a compare-and-swap that
treats "already active" as done, and an interrupted fallback search resumes
from its saved progress. A rerun of a day, or a backfill, leaves the same rows.

Where things are:
    context       the store, the (model, day) lock, the model, the day's sample and evidence
    steps         the steps above; run: run_day chains them in one process
    order         a model's days judged in order: a first run's turn, later days put back
    assess        the policy's inputs (earlier days, segments, label-free signals)
    adaptive      more of a close day's traffic, look by look, and why the looks stopped
    onboard       a first plan for a model or a new snapshot
    recalibrate   ranges from stored statistics; proactive recalibration
    fallback      the fallback search, saved and resumed
    reenable      back to the baseline after healthy days
    lifecycle     plans: validation, promotion (compare-and-swap), pins, cooldown
    search        the greedy search over units, and plan assembly
    evidence      held-out examples that grow on demand
    export        the active plan, written for serving
    user_plans    plans a user imports or promotes by hand
    scoring       a day's sample scored outside the run: `lpmon score`, the export's probe
"""

from lpmon.pipeline.context import day_lock, load_model, open_store
from lpmon.pipeline.daywork import RunResult
from lpmon.pipeline.onboard import onboard_day, onboard_snapshot
from lpmon.pipeline.recalibrate import proactive_recalibration
from lpmon.pipeline.run import STEPS, report_day, run_day

__all__ = [
    "STEPS",
    "RunResult",
    "day_lock",
    "load_model",
    "onboard_day",
    "onboard_snapshot",
    "open_store",
    "proactive_recalibration",
    "report_day",
    "run_day",
]
