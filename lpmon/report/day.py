"""What one model's day looked like, read back from the store (DayReport): its
headline, summary, reasons, links and events. lpmon.report.render draws it as
plain text and HTML (the alert emails' body and the report file the main job
points to), escaping every value that comes from data."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from lpmon.config import Config, confined
from lpmon.pipeline.capacity import Capacity
from lpmon.policy import Rules
from lpmon.report.limits import DayCounts, Limit, limit_of
from lpmon.report.templating import one_line, render, version
from lpmon.store import StateStore
from lpmon.store.reports import run_report

HISTORY_DAYS = 30
WORST = 3


@dataclass(frozen=True)
class DayReport:
    model_id: str
    day: str
    status: str
    action: str
    reasons: list[str]
    gate_pct: float
    dne_pct: float | None = None
    dne_pct_lo: float | None = None
    dne_pct_hi: float | None = None
    plan_version: int | None = None
    new_plan_version: int | None = None
    promoted: bool = False
    moved: list[str] = field(default_factory=list)  # "top_l.0: int8 -> fp16"
    worst_sqnr: list[dict] = field(default_factory=list)  # layer, precision, sqnr_db
    worst_saturation: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # the last HISTORY_DAYS of dne_history
    run_url: str = ""
    message: str = ""  # why a day could not be judged (failed, INSUFFICIENT_DATA)
    active_version: int | None = None  # the plan in force now (after the day)
    page_url: str = ""  # the model's lpmon page
    report_url: str = ""  # the day's HTML report, served by the lpmon page
    report_path: str = ""  # the day's HTML report file
    plans_file: str = ""  # what serving loads: plans/<model>/active.json
    serving_problem: str = ""  # the serving file is not the active plan, and why
    runbook_url: str = ""
    resolved_from: str = ""  # the last DEGRADED day, when this day is back under the gate
    segments: list[dict] = field(default_factory=list)  # segment, n, dne_pct, lo, hi
    previous_day: str = ""  # neighbouring days with a report (navigation)
    next_day: str = ""
    capacity: Capacity | None = None  # bytes served by the plan in force after the day (None: unknown)
    capacity_before: Capacity | None = None  # by the day's plan, when the day changed it
    limit: Limit | None = None  # what limited the verdict (INSUFFICIENT_DATA, WARN), and what to do
    still_waiting: bool = False  # waiting for onboarding's evidence, as the day before did (mailed then)
    web_ui: bool = True  # an Airflow web server serves the links (not so in `lpmon demo`)
    # Adaptive sampling's record of the day (None when it did not record them).
    examples_scored: int | None = None
    looks: int | None = None
    stop_reason: str | None = None  # "decided", "cap" or "traffic_exhausted"

    @property
    def dne_text(self) -> str:
        if self.dne_pct is None:
            return "no comparison"
        return (
            f"{self.dne_pct:.4f} % [{self.dne_pct_lo:.4f}, {self.dne_pct_hi:.4f}] against the {self.gate_pct:g} % gate"
        )


def build(config: Config, store: StateStore, model_id: str, day: str, run_url: str = "") -> DayReport:
    """The day's report from the rows the report step wrote."""
    summary = store.day_summary(model_id, day)
    if summary is None:
        raise LookupError(f"{model_id}: no run recorded for {day}")
    settings = config.model(model_id)
    layers = store.layer_metrics(model_id, day)
    new_version = summary.new_plan_version
    moved, promoted = [], False
    new_plan = store.plan_record(model_id, new_version) if new_version else None
    if new_plan is not None:
        promoted = new_plan.status != "candidate"
        old_plan = store.plan_record(model_id, summary.plan_version) if summary.plan_version else None
        if old_plan is not None:
            moved = _precision_changes(old_plan.plan_json, new_plan.plan_json)
    history = [r for r in run_report(store.db, "dne_history", model_id=model_id) if r["logical_date"] <= day]
    with_sqnr = [r for r in layers if r["sqnr_db"] is not None]
    from lpmon.pipeline.export import serving_problem

    serving = serving_problem(store, model_id)
    previous_day, next_day = store.neighbour_days(model_id, day)
    judged = [h for h in history if h["logical_date"] < day and h["status"] in ("HEALTHY", "DEGRADED")]
    segments = store.segment_metrics(model_id, day)
    active_version = store.plan_in_force_after(model_id, day)
    waiting = _onboarding_wait(summary)
    before = store.day_summary(model_id, previous_day) if waiting and previous_day else None
    return DayReport(
        model_id=model_id,
        day=day,
        status=summary.status,
        action=summary.action or "",
        reasons=([f"serving: {serving}"] if serving else []) + summary.reasons,
        gate_pct=settings.gate_pct,
        message=summary.message,
        active_version=active_version,
        **links(config, model_id, day),
        # the onboarding day was scored under its new plan, which replaced fp32
        **capacities(
            config, store, model_id, None if summary.action == "ONBOARD" else summary.plan_version, active_version
        ),
        limit=limit_of(summary.status, _counts(config, store, summary), Rules.of(settings), onboarding=waiting),
        still_waiting=before is not None and bool(_onboarding_wait(before)),
        serving_problem=serving,
        resolved_from=judged[-1]["logical_date"]
        if summary.status == "HEALTHY" and judged and judged[-1]["status"] == "DEGRADED"
        else "",
        segments=[
            {
                "segment": r["segment"],
                "n": r.get("n"),
                "dne_pct": r["dne_pct"],
                "dne_pct_lo": r["dne_pct_lo"],
                "dne_pct_hi": r["dne_pct_hi"],
            }
            for r in segments
        ],
        previous_day=previous_day,
        next_day=next_day,
        dne_pct=summary.dne_pct,
        dne_pct_lo=summary.dne_pct_lo,
        dne_pct_hi=summary.dne_pct_hi,
        examples_scored=summary.examples_scored,
        looks=summary.looks,
        stop_reason=summary.stop_reason,
        plan_version=summary.plan_version,
        new_plan_version=new_version,
        promoted=promoted,
        moved=moved,
        worst_sqnr=[
            {"layer": r["layer"], "precision": r["layer_precision"], "sqnr_db": r["sqnr_db"]}
            for r in sorted(with_sqnr, key=lambda r: r["sqnr_db"])[:WORST]
        ],
        worst_saturation=[
            {
                "layer": r["layer"],
                "precision": r["layer_precision"],
                "saturation": (r["saturation_below"] or 0) + (r["saturation_above"] or 0),
            }
            for r in sorted(layers, key=lambda r: -((r["saturation_below"] or 0) + (r["saturation_above"] or 0)))[
                :WORST
            ]
        ],
        history=history[-HISTORY_DAYS:],
        run_url=run_url,
    )


def promotion(
    config: Config, store: StateStore, model_id: str, day: str, old: int, new: int, reason: str, run_url: str = ""
) -> DayReport:
    """The report of a proactive recalibration's promotion (lpmon_recalibrate)."""
    run = store.run(model_id, day) or {}
    history = [r for r in run_report(store.db, "dne_history", model_id=model_id) if r["logical_date"] <= day]
    return DayReport(
        model_id=model_id,
        day=day,
        status=run.get("status", "-"),
        action="PROACTIVE",
        reasons=[reason],
        gate_pct=config.model(model_id).gate_pct,
        plan_version=old,
        active_version=new,
        **links(config, model_id, day),
        **capacities(config, store, model_id, old, new),
        new_plan_version=new,
        promoted=True,
        moved=_precision_changes(
            store.plan_record(model_id, old).plan_json, store.plan_record(model_id, new).plan_json
        ),
        history=history[-HISTORY_DAYS:],
        run_url=run_url,
    )


def capacities(config: Config, store: StateStore, model_id: str, before: int | None, after: int | None) -> dict:
    """The bytes served under the plan in force after the day, and under the day's
    own plan when the day changed it (None for a version: serving fp32)."""
    from lpmon.pipeline import capacity

    def of(version):
        record = store.plan_record(model_id, version) if version else None
        return capacity.of_plan(config, model_id, record.plan_json if record else None)

    now = of(after)
    return {"capacity": now, "capacity_before": of(before) if before != after and now is not None else None}


def _onboarding_wait(summary) -> str:
    """The day's message when it waited for onboarding's evidence ("" otherwise)."""
    from lpmon.pipeline.onboard import ONBOARDING_WAITS

    waiting = summary.status == "INSUFFICIENT_DATA" and summary.plan_version is None
    return summary.message if waiting and summary.message.startswith(ONBOARDING_WAITS) else ""


def _counts(config: Config, store: StateStore, summary) -> DayCounts:
    run = store.run(summary.model_id, summary.day) or {}
    return DayCounts(
        examples=summary.n,
        positives=run.get("positives"),
        sample_size=config.model(summary.model_id).sample_size,
        dne_pct=summary.dne_pct,
        lo=summary.dne_pct_lo,
        hi=summary.dne_pct_hi,
        stop_reason=run.get("stop_reason"),
    )


def links(config: Config, model_id: str, day: str) -> dict:
    """Where people find the model's page (the configured [airflow] base_url), the
    day's report, serving's file and the model's runbook."""
    from urllib.parse import quote

    base = config.airflow.base_url.rstrip("/")  # "": no Airflow web server (`lpmon demo`): no links into it
    return {
        "web_ui": bool(base),
        "page_url": f"{base}/lpmon/models/{quote(model_id)}#day-{day}" if base else "",
        "report_url": f"{base}/lpmon/models/{quote(model_id)}/reports/{day}.html" if base else "",
        "report_path": str(config.work_dir / "reports" / model_id / f"{day}.html"),
        "plans_file": str(config.plans_dir / model_id / "active.json"),
        "runbook_url": config.model(model_id).runbook_url,
    }


def _precision_changes(old_json: str, new_json: str) -> list[str]:
    """Grouped and in natural order: "bot_l.0 int8 -> fp16", "26 embedding tables int8 -> fp16"."""
    from lpmon.pipeline.lifecycle import group_units
    from lpmon.quant import QuantPlan

    old = {layer.name: layer.precision for layer in QuantPlan.from_json(old_json).layers}
    new = {layer.name: layer.precision for layer in QuantPlan.from_json(new_json).layers}
    return group_units({name: (old.get(name, "-"), p) for name, p in new.items() if old.get(name) != p})


COLOURS = {
    "HEALTHY": "#2f9e44",
    "WARN": "#e8a317",
    "DEGRADED": "#e03131",
    "INSUFFICIENT_DATA": "#868e96",
    "failed": "#5f3dc4",
}
NAMES = {
    "DEGRADED": "NE degraded",
    "PROMOTION": "new plan promoted",
    "FALLBACK": "layers raised to higher precision",
    "FAILED": "day not checked",
    "INSUFFICIENT_DATA": "not judged",
    "ONBOARDING": "waiting for onboarding evidence",
    "ONBOARDED": "onboarded: first quantized plan serving",
    "RESOLVED": "resolved",
}


def _names(report: DayReport, event: str) -> list[str]:
    out = []
    for e in (e for e in event.split("+") if e):
        name = NAMES.get(e, e)
        if e == "INSUFFICIENT_DATA" and report.limit:
            name += f" ({report.limit.label})"
        out.append(name)
    return out


def headline(report: DayReport, event: str = "") -> str:
    """The subject's words: the model, the day, the day's events."""
    return one_line(render("headline.txt", report=report, names=_names(report, event)))


def summary(report: DayReport, event: str = "") -> str:
    """The first line of a mail: what happened and what, if anything, is needed."""
    from lpmon.pipeline.onboard import ONBOARDING_WAITS

    events = {e for e in event.split("+") if e}
    return one_line(render("summary.txt", report=report, events=events, onboarding_waits=ONBOARDING_WAITS))


def labelled_reasons(report: DayReport) -> list[str]:
    """The reasons, each dNE said to be the day's or a candidate's (and on which plan)."""
    out = []
    for reason in report.reasons:
        if reason.startswith("dNE "):
            reason = f"the day's sample under {version(report.plan_version)}: {reason}"
        elif reason.startswith("candidate dNE") and report.new_plan_version:
            reason = f"candidate v{report.new_plan_version} on held-out traffic: {reason[len('candidate ') :]}"
        out.append(reason)
    return out


def _link_lines(report: DayReport) -> list[tuple[str, str]]:
    out = []
    if report.page_url:
        out.append(("lpmon page", report.page_url))
    if report.report_url:
        out.append(("day report", report.report_url))
    if report.report_path:
        out.append(("day report file", report.report_path))
    if report.runbook_url:
        out.append(("runbook", report.runbook_url))
    if report.run_url:
        out.append(("Airflow run", report.run_url))
    return out


def run_link_of(config: Config, model_id: str, day: str) -> str:
    """The Airflow run link an existing report file of the day holds ("" if none), so
    that rewriting it (for its next-day link) keeps it."""
    import re

    try:
        text = confined(config.work_dir, "reports", model_id, f"{day}.html").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return ""
    match = re.search(r'<a [^>]*href="([^"]+)">Airflow run</a>', text)
    return html.unescape(match.group(1)) if match else ""


def events(report: DayReport) -> list[str]:
    """What in this day deserves an email (lpmon.report.alerts sends them; the report file names them).
    Waiting for onboarding's evidence mails once, on its first day (ONBOARDING); the day
    a first plan passes mails ONBOARDED, not "not judged" beside a promotion."""
    onboarded = report.action == "ONBOARD" and report.promoted and bool(report.new_plan_version)
    out = []
    if report.status == "DEGRADED":
        out.append("DEGRADED")
    if report.status == "INSUFFICIENT_DATA" and not onboarded:
        if report.limit is None or report.limit.cause != "onboarding":
            out.append("INSUFFICIENT_DATA")
        elif not report.still_waiting:
            out.append("ONBOARDING")
    if report.status == "failed":
        out.append("FAILED")
    if onboarded:
        out.append("ONBOARDED")
    elif report.new_plan_version and report.promoted:
        out.append("PROMOTION")
    if report.action == "FALLBACK":
        out.append("FALLBACK")
    if report.resolved_from:
        out.append("RESOLVED")
    return out
