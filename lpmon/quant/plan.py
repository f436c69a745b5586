"""Quantization plans: per layer, its precision, scheme and parameters, with provenance.

A plan is what serving loads. JSON round trips are lossless (floats are
written with the shortest repr that reads back to the same value) and
strict: unknown fields, unknown schema versions, wrong types and invalid
parameters are rejected with the path of the offending field.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, cast

from .precision import LAYOUTS, PRECISIONS
from .qparams import QParams, integer_range

SCHEMA_VERSION = 1
SCHEMES = {
    "fp32": "none",
    "fp16": "weight_fp16",
    "bf16": "weight_bf16",
    "int8": None,  # per kind: linear per_channel_symmetric, embedding rowwise
    "int4": "rowwise",
    "int2": "rowwise",
}


class PlanError(ValueError):
    """A plan that cannot be used; the message names the field."""


@dataclass(frozen=True)
class ActivationRange:
    """Static per-tensor affine range of a layer's input activations."""

    lo: float
    hi: float
    scale: float
    zero_point: int
    bits: int = 8
    signed: bool = False

    # The one seam between the three views of a range: calibration's result
    # (lpmon.calibrate.RangeResult), the plan's record (this), the executors' grid (QParams).
    @classmethod
    def of(cls, result) -> "ActivationRange":
        """The plan's record of a calibrated range (a lpmon.calibrate RangeResult)."""
        return cls(result.lo, result.hi, result.scale, result.zero_point, result.bits, result.qmin < 0)

    def qparams(self) -> QParams:
        """The integer grid the executors quantize with."""
        return QParams(self.scale, self.zero_point, *integer_range(self.bits, self.signed))


@dataclass(frozen=True)
class LayerPlan:
    name: str
    kind: str
    precision: str
    scheme: str = ""
    activation: ActivationRange | None = None
    search: bool = False  # embeddings, 4/2-bit: greedy row range search

    def __post_init__(self):
        if not self.scheme:
            object.__setattr__(self, "scheme", default_scheme(self.kind, self.precision))


@dataclass(frozen=True)
class Provenance:
    method: str = ""  # calibration method, e.g. "l2"
    sample: str = ""  # which traffic, e.g. "2026-11-27, 100000 examples"
    date: str = ""  # ISO date the plan was made
    notes: str = ""


@dataclass(frozen=True)
class QuantPlan:
    model_id: str
    version: int
    layers: tuple[LayerPlan, ...]
    provenance: Provenance = field(default_factory=Provenance)
    schema_version: int = SCHEMA_VERSION
    # Where row-wise tables live (the model's setting): "prepack" or "tbe" (lpmon.quant.tbe).
    embedding_layout: str = "prepack"

    def __post_init__(self):
        validate(self)

    def layer(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"plan {self.model_id} v{self.version} has no layer {name!r}")

    def diff(self, new: "QuantPlan") -> list[str]:
        """Layer by layer, what changed between two plans (precision, range, scale)."""
        lines = []
        if self.embedding_layout != new.embedding_layout:
            lines.append(f"embedding_layout: {self.embedding_layout} -> {new.embedding_layout}")
        names = sorted({layer.name for layer in self.layers} | {layer.name for layer in new.layers})
        for name in names:
            a = next((layer for layer in self.layers if layer.name == name), None)
            b = next((layer for layer in new.layers if layer.name == name), None)
            if a is None or b is None:
                lines.append(f"{name}: {'added' if a is None else 'removed'}")
                continue
            if a.precision != b.precision:
                lines.append(f"{name}: precision {a.precision} -> {b.precision}")
            if a.activation and b.activation and a.activation != b.activation:
                lines.append(
                    f"{name}: range [{a.activation.lo:.6g}, {a.activation.hi:.6g}] -> "
                    f"[{b.activation.lo:.6g}, {b.activation.hi:.6g}], scale {a.activation.scale:.6g} -> "
                    f"{b.activation.scale:.6g}"
                )
        return lines

    def to_json(self) -> str:
        data = asdict(self)
        data["layers"] = {layer.pop("name"): layer for layer in data["layers"]}
        if self.embedding_layout == "prepack":
            # Written only when it is not the default: a plan reads back the same, and a
            # plan stored before the field existed keeps its JSON (plans are deduplicated on it).
            del data["embedding_layout"]
        return json.dumps(data, indent=2, allow_nan=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "QuantPlan":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise PlanError(f"plan is not valid JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data) -> "QuantPlan":
        _expect(data, dict, "plan")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PlanError(f"schema_version: {version!r} is not supported (this lpmon reads {SCHEMA_VERSION})")
        _check_keys(data, cls, "plan")
        layers = data.get("layers")
        _expect(layers, dict, "layers")
        parsed = []
        for name, spec in layers.items():
            path = f"layers.{name}"
            _expect(spec, dict, path)
            _check_keys(spec, LayerPlan, path, skip={"name"})
            activation = spec.get("activation")
            if activation is not None:
                _expect(activation, dict, f"{path}.activation")
                _check_keys(activation, ActivationRange, f"{path}.activation")
                activation = ActivationRange(**_typed(activation, ActivationRange, f"{path}.activation"))
            values = _typed({k: v for k, v in spec.items() if k != "activation"}, LayerPlan, path)
            parsed.append(LayerPlan(name=name, activation=activation, **values))
        provenance = data.get("provenance", {})
        _expect(provenance, dict, "provenance")
        _check_keys(provenance, Provenance, "provenance")
        return cls(
            model_id=_typed({"model_id": data.get("model_id")}, cls, "plan")["model_id"],
            version=_typed({"version": data.get("version")}, cls, "plan")["version"],
            layers=tuple(parsed),
            provenance=Provenance(**_typed(provenance, Provenance, "provenance")),
            embedding_layout=_typed({"embedding_layout": data.get("embedding_layout", "prepack")}, cls, "plan")[
                "embedding_layout"
            ],
        )


def default_scheme(kind: str, precision: str) -> str:
    if precision == "int8":
        return "per_channel_symmetric" if kind == "linear" else "rowwise"
    return SCHEMES.get(precision) or ""


def validate(plan: QuantPlan) -> None:
    if not isinstance(plan.model_id, str) or not plan.model_id:
        raise PlanError("model_id: must be a non-empty string")
    if not isinstance(plan.version, int) or isinstance(plan.version, bool) or plan.version < 1:
        raise PlanError(f"version: must be a positive integer, got {plan.version!r}")
    if plan.embedding_layout not in LAYOUTS:
        raise PlanError(f"embedding_layout: {plan.embedding_layout!r} is not one of {', '.join(LAYOUTS)}")
    names = [layer.name for layer in plan.layers]
    if len(set(names)) != len(names):
        raise PlanError("layers: duplicate layer names")
    for layer in plan.layers:
        path = f"layers.{layer.name}"
        if layer.kind not in PRECISIONS:
            raise PlanError(f"{path}.kind: {layer.kind!r} is not one of {', '.join(PRECISIONS)}")
        if layer.precision not in PRECISIONS[layer.kind]:
            raise PlanError(
                f"{path}.precision: {layer.precision!r} is not valid for a "
                f"{layer.kind} (choose from {', '.join(PRECISIONS[layer.kind])})"
            )
        if layer.scheme != default_scheme(layer.kind, layer.precision):
            raise PlanError(
                f"{path}.scheme: {layer.scheme!r} does not match precision "
                f"{layer.precision} (expected {default_scheme(layer.kind, layer.precision)!r})"
            )
        if layer.kind == "linear" and layer.precision == "int8" and layer.activation is None:
            raise PlanError(f"{path}.activation: an int8 linear layer needs a static activation range")
        if layer.search and layer.precision not in ("int4", "int2"):
            raise PlanError(f"{path}.search: only 4- and 2-bit embeddings search their row ranges")
        if layer.activation is not None:
            _validate_activation(layer.activation, f"{path}.activation")


def _validate_activation(a: ActivationRange, path: str) -> None:
    for name in ("lo", "hi", "scale"):
        value = getattr(a, name)
        if not math.isfinite(value):
            raise PlanError(f"{path}.{name}: must be finite, got {value}")
    if a.lo > a.hi:
        raise PlanError(f"{path}: lo {a.lo} is above hi {a.hi}")
    if a.scale <= 0:
        raise PlanError(f"{path}.scale: must be positive, got {a.scale}")
    if a.bits not in (8, 16):
        raise PlanError(f"{path}.bits: activations are 8- or 16-bit, got {a.bits}")
    qmin, qmax = (-(1 << (a.bits - 1)), (1 << (a.bits - 1)) - 1) if a.signed else (0, (1 << a.bits) - 1)
    if not qmin <= a.zero_point <= qmax:
        raise PlanError(f"{path}.zero_point: {a.zero_point} is outside [{qmin}, {qmax}]")


_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float), "bool": bool}


def _typed(values: dict[str, Any], cls, path: str) -> dict:
    """values with each field's type checked against cls's annotation."""
    hints = {f.name: f.type for f in fields(cls)}
    out = {}
    for key, value in values.items():
        hint = hints[key].split("|")[0].strip() if isinstance(hints[key], str) else "any"
        expected = _TYPES.get(hint)
        if expected is not None:
            bad_bool = hint in ("int", "float") and isinstance(value, bool)
            if not isinstance(value, expected) or bad_bool:
                raise PlanError(f"{path}.{key}: expected {hint}, got {type(value).__name__} {value!r}")
            if hint == "float":
                value = float(cast(float, value))  # an int or a float: checked above
        out[key] = value
    return out


def _check_keys(data: dict, cls, path: str, skip: frozenset | set = frozenset()) -> None:
    """No unknown fields, and every field without a default present."""
    known = {f.name for f in fields(cls)} - set(skip)
    unknown = sorted(set(data) - known)
    if unknown:
        raise PlanError(f"{path}.{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
    required = [
        f.name for f in fields(cls) if f.name not in skip and f.default is MISSING and f.default_factory is MISSING
    ]
    absent = [name for name in required if name not in data]
    if absent:
        raise PlanError(f"{path}.{absent[0]}: missing")


def _expect(value, kind, path: str) -> None:
    if not isinstance(value, kind):
        raise PlanError(f"{path}: expected an object, got {type(value).__name__}")
