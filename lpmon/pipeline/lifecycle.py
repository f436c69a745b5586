"""The plan lifecycle: candidate -> validated -> promoted | rejected, with reasons.

Every plan that could reach serving goes through here, whoever made it
(onboarding, recalibration, fallback, re-enabling, proactive recalibration, or
a user), so one set of rules holds everywhere:

1. Promotion needs confidence. A candidate passes when, on held-out labelled
   examples, the upper end of its dNE interval is at or under the gate; or,
   when the plan in force is already over the gate, when a paired comparison
   on the same examples shows it significantly better than that plan (upper
   end of its dNE relative to the plan in force below zero) with its own
   estimate within the gate. When the evidence at hand is inconclusive, more
   is drawn (`Evidence.extend`), up to a cap; if it still cannot show it, the
   candidate is not promoted and the reason says so.
2. A candidate identical to the plan in force (same precisions, same ranges)
   is never stored as a new version.
3. After a promotion, the units it changed cool down: re-enabling does not
   touch them for `cooldown_days`. Pinned units are never changed by lpmon.

The rules are pure functions of comparisons and plans (`judge`, `validate`,
`reenable_targets`, ...), tested without a model; `PlanLifecycle` applies
them against the state store (one compare-and-swap promotion per candidate).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from lpmon.metrics import Comparison
from lpmon.quant import LayerPlan, QuantPlan
from lpmon.quant.precision import Precision


class Origin(str, Enum):
    """Who made a plan (recorded with its promotion)."""

    ONBOARD = "ONBOARD"
    RECALIBRATE = "RECALIBRATE"
    FALLBACK = "FALLBACK"
    REENABLE = "REENABLE"
    PROACTIVE = "PROACTIVE"
    USER = "USER"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    n: int = 0  # held-out examples the verdict rests on
    degraded: bool = False  # the candidate's own interval is above the gate
    comparison: Comparison | None = None


class Evidence(Protocol):
    """Held-out labelled examples (lpmon.pipeline.evidence.HeldOut is the real one)."""

    @property
    def n(self) -> int: ...

    def compare(self, plan: QuantPlan) -> Comparison:
        """The plan against fp32."""

    def paired(self, candidate: QuantPlan, active: QuantPlan) -> Comparison:
        """The candidate against the plan in force (its dNE relative to it)."""

    def extend(self) -> bool:
        """Draw more examples; False when the cap is reached or traffic runs out."""


def judge(candidate: Comparison, gate_pct: float, *, versus_active: Comparison | None = None) -> Verdict:
    """Rule 1 on one body of evidence. versus_active is given only when the plan
    in force is over the gate (then being significantly better than it counts)."""
    c, n = candidate, candidate.n
    if c.undefined_reason:
        return Verdict(False, f"candidate cannot be judged: {c.undefined_reason}", n, comparison=c)
    interval = f"dNE {c.dne_pct:.4f} % [{c.dne_pct_lo:.4f}, {c.dne_pct_hi:.4f}] on {n:,} held-out examples"
    if c.dne_pct_hi <= gate_pct:
        return Verdict(True, f"candidate {interval}: within the {gate_pct} % gate with confidence", n, comparison=c)
    if c.dne_pct_lo > gate_pct:
        return Verdict(False, f"candidate {interval}: above the {gate_pct} % gate", n, degraded=True, comparison=c)
    if versus_active is not None and versus_active.dne_pct_hi < 0 and c.dne_pct <= gate_pct:
        v = versus_active
        return Verdict(
            True,
            f"candidate {interval}: significantly better than the plan in force "
            f"({v.dne_pct:.4f} % [{v.dne_pct_lo:.4f}, {v.dne_pct_hi:.4f}] relative to it), "
            "which is over the gate",
            n,
            comparison=c,
        )
    return Verdict(False, f"candidate {interval}: not shown within the {gate_pct} % gate", n, comparison=c)


def validate(
    candidate: QuantPlan,
    evidence: Evidence,
    gate_pct: float,
    *,
    active: QuantPlan | None = None,
    active_over_gate: bool = False,
) -> Verdict:
    """Rule 1, drawing more evidence while the verdict is inconclusive. Being better
    than a plan in force that is over the gate counts only once the evidence is all
    drawn: a candidate is shown within the gate whenever the traffic allows it."""
    while True:
        verdict = judge(evidence.compare(candidate), gate_pct)
        if verdict.passed or verdict.degraded:
            return verdict
        if not evidence.extend():
            break
    if active is not None and active_over_gate:
        versus = judge(evidence.compare(candidate), gate_pct, versus_active=evidence.paired(candidate, active))
        if versus.passed:
            return versus
    return Verdict(
        False,
        verdict.reason + f" (all the evidence available: {evidence.n:,} examples)",
        verdict.n,
        comparison=verdict.comparison,
    )


def significantly_better(candidate: QuantPlan, active: QuantPlan, evidence: Evidence) -> tuple[bool, Comparison]:
    """Whether the candidate beats the plan in force on the same examples (upper end of
    its dNE relative to it below zero), drawing more evidence while that is unsettled."""
    while True:
        versus = evidence.paired(candidate, active)
        if versus.dne_pct_hi < 0 or versus.dne_pct_lo > 0 or not evidence.extend():
            return versus.dne_pct_hi < 0, versus


def same_quantization(a: QuantPlan, b: QuantPlan) -> bool:
    """Same precisions and parameters layer by layer (versions and provenance aside)."""
    return sorted(a.layers, key=lambda layer: layer.name) == sorted(b.layers, key=lambda layer: layer.name)


def changed_units(before: QuantPlan | None, after: QuantPlan) -> list[str]:
    """Layers whose precision or parameters differ (every layer when there was no plan)."""
    if before is None:
        return sorted(layer.name for layer in after.layers)
    old = {layer.name: layer for layer in before.layers}
    return sorted(layer.name for layer in after.layers if old.get(layer.name) != layer)


def cooling_units(promotions: list[tuple[str, list[str]]], day: str, cooldown_days: int) -> set[str]:
    """Units changed by promotions on the `cooldown_days - 1` days before `day` (a rerun of
    the promotion's own day does not see it). promotions: (logical date, changed units)."""
    first = (dt.date.fromisoformat(day) - dt.timedelta(days=cooldown_days - 1)).isoformat()
    return {unit for when, changed in promotions if first <= when < day for unit in changed}


def reenable_targets(
    active: dict[str, str], baseline: dict[str, str], *, pinned: set[str], cooling: set[str]
) -> dict[str, str]:
    """Units serving above their baseline precision (the one onboarding or the user chose)
    that may go back to it: not pinned, not changed by a recent promotion."""
    out = {}
    for unit, precision in active.items():
        target = baseline.get(unit)
        if (
            target is not None
            and unit not in pinned
            and unit not in cooling
            and Precision(precision).bits > Precision(target).bits
        ):
            out[unit] = target
    return out


def group_units(moves: dict[str, tuple[str, str]]) -> list[str]:
    """Human lines for many unit moves: tables with the same move are grouped.
    moves: unit -> (before, after)."""
    lines: list[str] = []
    tables: dict[tuple[str, str], list[str]] = {}
    for unit, (before, after) in sorted(moves.items(), key=lambda kv: _natural(kv[0])):
        if unit.startswith("emb_l."):
            tables.setdefault((before, after), []).append(unit)
        else:
            lines.append(f"{unit} {before} -> {after}")
    for (before, after), names in tables.items():
        lines.append(
            names[0] + f" {before} -> {after}"
            if len(names) == 1
            else f"{len(names)} embedding tables {before} -> {after}"
        )
    return lines


def _natural(name: str):
    head, _, tail = name.rpartition(".")
    return (head, int(tail)) if tail.isdigit() else (name, 0)


# --- applying the rules against the store -------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of a candidate."""

    promoted: bool
    version: int | None  # the stored version (the active one if it was identical)
    reason: str
    lost_race: bool = False  # the plan in force changed meanwhile; see `active_version`
    active_version: int | None = None


class PlanLifecycle:
    """Stores and promotes candidates for one model, by the rules above."""

    def __init__(self, store, model_id: str, before_promote=None):
        """before_promote(): called just before a promotion commits; it may raise to stop
        it (the pipeline checks there that serving's file can be written)."""
        self.store, self.model_id, self.before_promote = store, model_id, before_promote

    def pins(self) -> dict[str, LayerPlan]:
        """Pinned layers, as the user pinned them."""
        return {name: layer_from_json(name, text) for name, (_, text) in self.store.pins(self.model_id).items()}

    def pin(self, version: int, layers: list[str] | None = None) -> list[str]:
        """Pin the named layers (all of them when None) as they are in plan `version`."""
        plan = self.plan(version)
        names = [layer.name for layer in plan.layers] if layers is None else layers
        unknown = sorted(set(names) - {layer.name for layer in plan.layers})
        if unknown:
            raise ValueError(f"plan v{version} of {self.model_id} has no layer {', '.join(unknown)}")
        self.store.pin_layers(self.model_id, version, {n: layer_to_json(plan.layer(n)) for n in names})
        return sorted(names, key=_natural)

    def plan(self, version: int) -> QuantPlan:
        record = self.store.plan_record(self.model_id, version)
        if record is None:
            raise ValueError(f"{self.model_id} has no plan v{version}")
        return QuantPlan.from_json(record.plan_json)

    def active(self) -> QuantPlan | None:
        record = self.store.active_plan(self.model_id)
        return QuantPlan.from_json(record.plan_json) if record else None

    def store_candidate(self, candidate: QuantPlan, day: str, origin: Origin) -> int:
        """Store a candidate that is not promoted now (a user's import); an identical
        stored plan is reused."""
        for record in self.store.plans(self.model_id):
            if same_quantization(QuantPlan.from_json(record.plan_json), candidate):
                return int(record.version)
        return self.store.add_candidate(self.model_id, day, origin.value, lambda v: _numbered(candidate, v).to_json())

    def propose(
        self,
        candidate: QuantPlan,
        day: str,
        origin: Origin,
        verdict: Verdict | None,
        *,
        expected_active: int | None,
        forced: bool = False,
        stored: int | None = None,
    ) -> Outcome:
        """Promote `candidate` over the plan expected in force if its verdict passed (or
        `forced`, recorded as such). Identical candidates are not stored; a rerun of the
        day finds the candidate it stored before and reports the same outcome.
        stored: the version of an already stored candidate (a user's import) to promote."""
        ok = forced or (verdict is not None and verdict.passed)
        reason = "forced by the user (not validated)" if forced else (verdict.reason if verdict else "not validated")
        rerun = next(
            (
                r
                for r in self.store.plans_of_day(self.model_id, day, origin=origin.value)
                if same_quantization(QuantPlan.from_json(r.plan_json), candidate)
            ),
            None,
        )
        active = self.store.active_plan(self.model_id)
        current = active.version if active else None
        if rerun is not None and ok:
            if self.store.promote(self.model_id, rerun.version, expected_active=expected_active):
                if rerun.status == "candidate":  # stored earlier but never promoted (a user's import): now it is
                    self._record(
                        rerun.version, day, origin, reason, forced, active_plan=_plan(active), candidate=candidate
                    )
                return Outcome(True, rerun.version, reason, active_version=rerun.version)
            return Outcome(
                False,
                rerun.version,
                f"plan v{current} came into force meanwhile",
                lost_race=True,
                active_version=current,
            )
        active_plan = _plan(active)
        if active_plan is not None and same_quantization(active_plan, candidate):
            return Outcome(
                False,
                active.version,
                f"candidate identical to plan v{active.version} in force: nothing to change",
                active_version=current,
            )
        if not ok:
            return Outcome(False, None, reason, active_version=current)
        if current != expected_active:
            return Outcome(
                False, None, f"plan v{current} came into force meanwhile", lost_race=True, active_version=current
            )
        if self.before_promote is not None:
            self.before_promote()
        version = (
            stored
            if stored is not None
            else self.store.add_candidate(self.model_id, day, origin.value, lambda v: _numbered(candidate, v).to_json())
        )
        if not self.store.promote(self.model_id, version, expected_active=expected_active):
            now = self.store.active_plan(self.model_id)
            return Outcome(
                False,
                version,
                f"plan v{now.version if now else None} came into force meanwhile",
                lost_race=True,
                active_version=now.version if now else None,
            )
        self._record(version, day, origin, reason, forced, active_plan=active_plan, candidate=candidate)
        return Outcome(True, version, reason, active_version=version)

    def _record(self, version, day, origin, reason, forced, *, active_plan, candidate) -> None:
        """The promotion's plan_events row: who, when, why, and the units it changed."""
        self.store.record_plan_event(
            self.model_id,
            version,
            day,
            origin.value,
            reason,
            forced=forced,
            units=changed_units(active_plan, candidate),
        )

    def promotions(self) -> list[tuple[str, list[str]]]:
        """(day, changed units) of every recorded promotion."""
        return [(e["logical_date"], json.loads(e["units_json"])) for e in self.store.plan_events(self.model_id)]

    def baseline(self) -> dict[str, str] | None:
        """The precisions of the last plan onboarding or a user put in force: what
        re-enabling may return units to (never below it)."""
        events = [
            e for e in self.store.plan_events(self.model_id) if e["origin"] in (Origin.ONBOARD.value, Origin.USER.value)
        ]
        if not events:
            return None
        return {layer.name: layer.precision for layer in self.plan(events[-1]["version"]).layers}


def _plan(record) -> QuantPlan | None:
    return QuantPlan.from_json(record.plan_json) if record else None


def _numbered(plan: QuantPlan, version: int) -> QuantPlan:
    return replace(plan, version=version)


def layer_to_json(layer: LayerPlan) -> str:
    """One layer as it appears in a plan's JSON."""
    return json.dumps(json.loads(QuantPlan("x", 1, (layer,)).to_json())["layers"][layer.name], sort_keys=True)


def layer_from_json(name: str, text: str) -> LayerPlan:
    """The inverse of layer_to_json, with a plan's checks."""
    data = {"schema_version": 1, "model_id": "x", "version": 1, "layers": {name: json.loads(text)}}
    return QuantPlan.from_dict(data).layers[0]
