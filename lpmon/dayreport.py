"""What one model's day looked like, read back from the store, as plain text and
as HTML (the alert emails' body and the report file the main job points to).

Every value that comes from data (model names, layer names, reasons) is
escaped in the HTML.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from lpmon.atomic import write_atomically
from lpmon.config import Config, confined
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
    moved: list[str] = field(default_factory=list)          # "top_l.0: int8 -> fp16"
    worst_sqnr: list[dict] = field(default_factory=list)     # layer, precision, sqnr_db
    worst_saturation: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)        # the last HISTORY_DAYS of dne_history
    run_url: str = ""

    @property
    def dne_text(self) -> str:
        if self.dne_pct is None:
            return "no comparison"
        return (f"{self.dne_pct:.4f} % [{self.dne_pct_lo:.4f}, {self.dne_pct_hi:.4f}] "
                f"against the {self.gate_pct:g} % gate")


def build(config: Config, store: StateStore, model_id: str, day: str, run_url: str = "") -> DayReport:
    """The day's report from the rows the report step wrote."""
    runs = [r for r in store.rows("runs", model_id) if r["logical_date"] == day]
    if not runs:
        raise LookupError(f"{model_id}: no run recorded for {day}")
    run = runs[0]
    decision = next((r for r in store.rows("decisions", model_id) if r["logical_date"] == day), {})
    metrics = next((r for r in store.rows("run_metrics", model_id)
                    if r["logical_date"] == day and r["segment"] == ""), {})
    layers = [r for r in store.rows("layer_metrics", model_id) if r["logical_date"] == day]
    plans = {r["version"]: r for r in store.rows("plans", model_id)}
    new_version = decision.get("new_plan_version")
    moved, promoted = [], False
    if new_version and new_version in plans:
        promoted = plans[new_version]["status"] != "candidate"
        if run["plan_version"] in plans:
            moved = _precision_changes(plans[run["plan_version"]]["plan_json"], plans[new_version]["plan_json"])
    history = [r for r in run_report(store.db, "dne_history", model_id=model_id) if r["logical_date"] <= day]
    with_sqnr = [r for r in layers if r["sqnr_db"] is not None]
    from lpmon.export import serving_problem

    serving = serving_problem(store, model_id)
    return DayReport(
        model_id=model_id, day=day, status=run["status"], action=decision.get("action", ""),
        reasons=([f"serving: {serving}"] if serving else []) + json.loads(decision.get("reasons_json") or "[]"), gate_pct=config.model(model_id).gate_pct,
        dne_pct=metrics.get("dne_pct"), dne_pct_lo=metrics.get("dne_pct_lo"), dne_pct_hi=metrics.get("dne_pct_hi"),
        plan_version=run["plan_version"], new_plan_version=new_version, promoted=promoted, moved=moved,
        worst_sqnr=[{"layer": r["layer"], "precision": r["layer_precision"], "sqnr_db": r["sqnr_db"]}
                    for r in sorted(with_sqnr, key=lambda r: r["sqnr_db"])[:WORST]],
        worst_saturation=[{"layer": r["layer"], "precision": r["layer_precision"],
                           "saturation": (r["saturation_below"] or 0) + (r["saturation_above"] or 0)}
                          for r in sorted(layers, key=lambda r: -((r["saturation_below"] or 0)
                                                                 + (r["saturation_above"] or 0)))[:WORST]],
        history=history[-HISTORY_DAYS:], run_url=run_url)


def promotion(config: Config, store: StateStore, model_id: str, day: str, old: int, new: int, reason: str,
              run_url: str = "") -> DayReport:
    """The report of a proactive recalibration's promotion (lpmon_recalibrate)."""
    plans = {r["version"]: r for r in store.rows("plans", model_id)}
    run = next((r for r in store.rows("runs", model_id) if r["logical_date"] == day), {})
    history = [r for r in run_report(store.db, "dne_history", model_id=model_id) if r["logical_date"] <= day]
    return DayReport(model_id=model_id, day=day, status=run.get("status", "-"), action="PROACTIVE",
                     reasons=[reason], gate_pct=config.model(model_id).gate_pct, plan_version=old,
                     new_plan_version=new, promoted=True,
                     moved=_precision_changes(plans[old]["plan_json"], plans[new]["plan_json"]),
                     history=history[-HISTORY_DAYS:], run_url=run_url)


def _precision_changes(old_json: str, new_json: str) -> list[str]:
    from lpmon.quant import QuantPlan

    old = {layer.name: layer.precision for layer in QuantPlan.from_json(old_json).layers}
    new = {layer.name: layer.precision for layer in QuantPlan.from_json(new_json).layers}
    return [f"{name}: {old.get(name, '-')} -> {p}" for name, p in sorted(new.items()) if old.get(name) != p]


def headline(report: DayReport, event: str = "") -> str:
    what = {"DEGRADED": "NE degraded", "PROMOTION": f"plan v{report.new_plan_version} promoted",
            "FALLBACK": "layers fell back to higher precision",
            "FAILED": "the day could not be checked",
            "INSUFFICIENT_DATA": "not enough traffic to judge the day"}.get(event, report.status)
    return f"{report.model_id} {report.day}: {what}"


def render_text(report: DayReport, event: str = "") -> str:
    lines = [headline(report, event), "",
             f"status:   {report.status}", f"dNE:      {report.dne_text}",
             f"decision: {report.action or '-'}"]
    lines += [f"  - {reason}" for reason in report.reasons]
    plan = f"v{report.plan_version}" if report.plan_version else "-"
    if report.new_plan_version:
        plan += f" -> v{report.new_plan_version} ({'promoted' if report.promoted else 'not promoted'})"
    lines.append(f"plan:     {plan}")
    if report.moved:
        lines.append("precision changes:")
        lines += [f"  - {m}" for m in report.moved]
    if report.worst_sqnr:
        lines.append("worst layers by SQNR:")
        lines += [f"  - {r['layer']} ({r['precision']}): {r['sqnr_db']:.1f} dB" for r in report.worst_sqnr]
    if report.worst_saturation:
        lines.append("worst layers by saturation:")
        lines += [f"  - {r['layer']} ({r['precision']}): {100 * r['saturation']:.3f} %"
                  for r in report.worst_saturation]
    if report.run_url:
        lines.append(f"Airflow run: {report.run_url}")
    return "\n".join(lines) + "\n"


def render_html(report: DayReport, chart_src: str, event: str = "") -> str:
    """chart_src: "cid:..." in an email, a data: URI in a file."""
    e = html.escape
    rows = [("status", e(report.status)), ("dNE", e(report.dne_text)), ("decision", e(report.action or "-"))]
    plan = f"v{report.plan_version}" if report.plan_version else "-"
    if report.new_plan_version:
        plan += f" &rarr; v{report.new_plan_version} ({'promoted' if report.promoted else 'not promoted'})"
    rows.append(("plan", plan))
    table = "".join(f"<tr><th align='left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    parts = [f"<h2>{e(headline(report, event))}</h2>", f"<table>{table}</table>"]
    if report.reasons:
        parts.append("<h3>Why</h3><ul>" + "".join(f"<li>{e(r)}</li>" for r in report.reasons) + "</ul>")
    if report.moved:
        parts.append("<h3>Precision changes</h3><ul>" + "".join(f"<li>{e(m)}</li>" for m in report.moved) + "</ul>")
    if report.worst_sqnr:
        parts.append("<h3>Worst layers by SQNR</h3><table><tr><th>layer</th><th>precision</th><th>SQNR (dB)</th></tr>"
                     + "".join(f"<tr><td>{e(r['layer'])}</td><td>{e(r['precision'])}</td>"
                               f"<td>{r['sqnr_db']:.1f}</td></tr>" for r in report.worst_sqnr) + "</table>")
    if report.worst_saturation:
        parts.append("<h3>Worst layers by saturation</h3><table><tr><th>layer</th><th>precision</th>"
                     "<th>saturated (%)</th></tr>"
                     + "".join(f"<tr><td>{e(r['layer'])}</td><td>{e(r['precision'])}</td>"
                               f"<td>{100 * r['saturation']:.3f}</td></tr>" for r in report.worst_saturation)
                     + "</table>")
    parts.append(f"<h3>dNE, last {len(report.history)} days</h3>"
                 f"<img src=\"{e(chart_src)}\" alt=\"dNE of {e(report.model_id)} over the last days, "
                 f"with the gate\" width=\"700\">")
    if report.run_url:
        parts.append(f"<p><a href=\"{e(report.run_url)}\">The Airflow run</a></p>")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>" + e(headline(report, event))
            + "</title></head><body style=\"font-family: sans-serif\">" + "\n".join(parts) + "</body></html>\n")


def chart(report: DayReport) -> bytes:
    from lpmon.chart import dne_chart_png

    return dne_chart_png(report.history, report.gate_pct, f"{report.model_id}: dNE by day")


def write_file(config: Config, report: DayReport) -> Path:
    """The report as one self-contained HTML file (chart inlined), written atomically:
    <work_dir>/reports/<model>/<day>.html."""
    png = base64.b64encode(chart(report)).decode("ascii")
    path = confined(config.work_dir, "reports", report.model_id, f"{report.day}.html")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The umask's mode (or file_mode), like the plans: people other than the worker read reports.
    return write_atomically(path, render_html(report, f"data:image/png;base64,{png}").encode("utf-8"),
                            config.file_mode)
