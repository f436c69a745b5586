"""What a plan saves: the bytes serving holds under it, against the same model all
in fp32 and all in int8 (row-wise tables with their per-row scale and bias), by
the cost model the fallback search minimises (lpmon.quant.precision.bytes_served).

The sizes come from the model's architecture only (spec.json, or the torch
program's spec for a TorchScript snapshot), read once per snapshot and kept: a
page or a report never loads weights for them. A model scored from logged
predictions has no snapshot, so its capacity is unknown (None).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from lpmon.config import Config, ModelSettings
from lpmon.pipeline.assembly import Unit, spec_units
from lpmon.quant import QuantPlan


@dataclass(frozen=True)
class Capacity:
    """Bytes served under a plan, and by the same model all fp32 and all int8."""

    bytes_served: int
    fp32_bytes: int
    int8_bytes: int

    @property
    def fp32_share_pct(self) -> float:
        """The plan's bytes as a share of the fp32 model's (100: no saving)."""
        return 100.0 * self.bytes_served / self.fp32_bytes

    @property
    def int8_share_pct(self) -> float:
        return 100.0 * self.bytes_served / self.int8_bytes

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self, version: int | None, verb: str = "serves") -> str:
        """ "v3 serves 41 % of the fp32 bytes (1.2 MB of 2.9 MB; all-int8 would be 0.8 MB)"."""
        who = f"v{version}" if version else "fp32 (no plan)"
        return (
            f"{who} {verb} {self.fp32_share_pct:.0f} % of the fp32 bytes ({megabytes(self.bytes_served)} of "
            f"{megabytes(self.fp32_bytes)}; all-int8 would be {megabytes(self.int8_bytes)})"
        )


def megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"


def of_precisions(units: dict[str, Unit], precisions: dict[str, str]) -> Capacity:
    """precisions: unit -> precision (a unit not named is served fp32, as serving does)."""

    def total(precision_of) -> int:
        return round(sum(unit.bytes(precision_of(name)) for name, unit in units.items()))

    return Capacity(
        bytes_served=total(lambda name: precisions.get(name, "fp32")),
        fp32_bytes=total(lambda name: "fp32"),
        int8_bytes=total(lambda name: "int8"),
    )


def of_plan(config: Config, model_id: str, plan_json: str | None) -> Capacity | None:
    """The capacity of a stored plan of the model (plan_json None: serving fp32);
    None when the model's sizes cannot be read (logged predictions, no snapshot)."""
    settings = config.model(model_id)
    plan = None if plan_json is None else QuantPlan.from_json(plan_json)
    units = model_units(settings, plan.embedding_layout if plan else settings.embedding_layout)
    if units is None:
        return None
    return of_precisions(units, {} if plan is None else {layer.name: layer.precision for layer in plan.layers})


def plan_capacity(config: Config, store, model_id: str) -> dict:
    """What the plans serve: the active plan's bytes against fp32 and all-int8
    ("capacity", None when the model's sizes are unknown), and each promotion's
    bytes with the change from the plan before it ("plan_changes")."""
    active = store.active_plan(model_id)
    now = of_plan(config, model_id, active.plan_json if active else None)
    changes, before = [], None
    previous = of_plan(config, model_id, None)
    for plan in store.plans(model_id):
        if plan.status not in ("active", "retired"):
            continue
        served = of_plan(config, model_id, plan.plan_json)
        if served is None or previous is None:  # the model's sizes are unknown
            break
        changes.append(
            {
                "day": plan.logical_date,
                "version": plan.version,
                "before": before,
                "bytes": served.bytes_served,
                "share_pct": served.fp32_share_pct,
                "change_pct": served.fp32_share_pct - previous.fp32_share_pct,
            }
        )
        before, previous = plan.version, served
    return {
        "capacity": None
        if now is None
        else {**now.as_dict(), "text": now.describe(active.version if active else None)},
        "plan_changes": changes,
    }


_SIZES: dict[tuple[str, str, int], dict[str, Unit] | None] = {}  # (snapshot, layout, its mtime) -> units


def model_units(settings: ModelSettings, layout: str) -> dict[str, Unit] | None:
    """The model's units with their sizes, from its snapshot's architecture (None:
    unknown), tables costed in the embedding layout (a plan's own). Kept per snapshot and
    modification time: a new snapshot is read again."""
    if settings.scorer == "logged" or not settings.snapshot:
        return None
    spec = Path(settings.snapshot) / "spec.json"
    try:
        key = (
            settings.snapshot,
            settings.embedding_layout,
            os.stat(spec if spec.is_file() else settings.snapshot).st_mtime_ns,
        )
    except OSError:
        return None
    if key not in _SIZES:
        _SIZES[key] = _read_units(settings, spec, layout)
    return _SIZES[key]


def _read_units(settings: ModelSettings, spec: Path, layout: str) -> dict[str, Unit] | None:
    from lpmon.model.spec import ModelSpec, SpecError

    try:
        if spec.is_file():
            return spec_units(ModelSpec.load(spec), layout)
        from lpmon.pipeline.context import load_model

        return spec_units(
            load_model(settings).spec, settings.embedding_layout
        )  # a TorchScript program: its spec is read from it
    except (OSError, SpecError, LookupError, ValueError):
        return None
