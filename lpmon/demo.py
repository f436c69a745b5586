"""A small end-to-end run of what lpmon has today (the first README command).

A two-layer fp32 model scores a day of synthetic traffic; its "deployed"
low-precision twin quantizes the hidden activations to uint8 with a static
range calibrated on day 0. The traffic drifts day by day, the calibrated
range goes stale, activations clip, and the quantized model's NE slips away
from the fp32 model's. Each day is compared with lpmon.metrics.compare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lpmon.metrics import Comparison, compare, compare_by_segment

GATE_PCT = 0.05
SURFACES = ("feed", "search", "video")


@dataclass(frozen=True)
class TwoLayerModel:
    w1: np.ndarray  # [features, hidden]
    w2: np.ndarray  # [hidden]
    bias: float

    @classmethod
    def random(cls, rng: np.random.Generator, features: int = 16, hidden: int = 32):
        w1 = rng.normal(0, 1 / np.sqrt(features), (features, hidden)).astype(np.float32)
        w2 = rng.normal(0, 1.2 / np.sqrt(hidden), hidden).astype(np.float32)
        return cls(w1, w2, bias=-2.2)

    def hidden(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.w1, 0)

    def predict(self, hidden: np.ndarray) -> np.ndarray:
        logits = hidden @ self.w2 + np.float32(self.bias)
        return (1 / (1 + np.exp(-logits))).astype(np.float32)


def quantize_uint8(values: np.ndarray, hi: float) -> np.ndarray:
    """Fake-quantize post-ReLU activations to uint8 on the static range [0, hi]."""
    scale = np.float32(hi / 255)
    return np.clip(np.rint(values / scale), 0, 255).astype(np.float32) * scale


def day_traffic(rng: np.random.Generator, day: int, n: int, features: int):
    """Features whose spread grows with the day; surfaces as segments."""
    spread = 1.0 + 0.06 * day
    x = rng.normal(0.1 * day / 14, spread, (n, features)).astype(np.float32)
    surface = rng.integers(0, len(SURFACES), n)
    return x, surface


def run(days: int = 14, examples_per_day: int = 200_000, seed: int = 7
        ) -> tuple[list[Comparison], dict[str, Comparison]]:
    """Compare fp32 and uint8 predictions every day; also by surface on the last day."""
    rng = np.random.default_rng(seed)
    model = TwoLayerModel.random(rng)
    features = model.w1.shape[0]
    calibration, _ = day_traffic(rng, 0, 50_000, features)
    static_hi = float(np.percentile(model.hidden(calibration), 99.9))
    results = []
    for day in range(days):
        x, surface = day_traffic(rng, day, examples_per_day, features)
        hidden = model.hidden(x)
        p_fp32 = model.predict(hidden)
        p_int8 = model.predict(quantize_uint8(hidden, static_hi))
        labels = (rng.random(examples_per_day) < p_fp32).astype(np.uint8)
        results.append(compare(p_fp32, p_int8, labels))
        last = (p_fp32, p_int8, labels, np.asarray(SURFACES)[surface])
    return results, compare_by_segment(*last)


def gate_status(c: Comparison) -> str:
    if c.dne_pct_lo > GATE_PCT:
        return "above gate"
    if c.dne_pct > GATE_PCT:
        return "straddles gate"
    return "within gate"


def format_table(results: list[Comparison], segments: dict) -> str:
    header = (f"{'day':>3} {'n':>7} {'pos%':>5} {'NE fp32':>8} {'NE int8':>8} "
              f"{'dNE %':>7} {'95% interval':>18} {'KL gap %':>8} {'max|dp|':>8}  status")
    lines = [header, "-" * len(header)]
    for day, c in enumerate(results):
        lines.append(
            f"{day:>3} {c.n:>7} {100 * c.positives / c.n:>5.1f} {c.ne_ref:>8.5f} {c.ne_q:>8.5f} "
            f"{c.dne_pct:>7.3f} [{c.dne_pct_lo:>7.3f}, {c.dne_pct_hi:>7.3f}] {c.kl_gap_pct:>8.3f} "
            f"{c.max_abs_diff:>8.4f}  {gate_status(c)}"
        )
    lines += ["", f"last day by surface (gate {GATE_PCT} % relative NE):"]
    for name, c in segments.items():
        lines.append(f"  {name:<7} n={c.n:>6}  dNE {c.dne_pct:7.3f} % "
                     f"[{c.dne_pct_lo:.3f}, {c.dne_pct_hi:.3f}]  KL gap {c.kl_gap_pct:.3f} %")
    return "\n".join(lines)


def main(days: int, examples_per_day: int, seed: int, out: Path | None) -> int:
    results, segments = run(days, examples_per_day, seed)
    print("lpmon demo: fp32 model vs uint8 activations with day-0 ranges, drifting traffic")
    print(format_table(results, segments))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "days": [c.as_dict() for c in results],
            "last_day_by_surface": {k: v.as_dict() for k, v in segments.items()},
        }, indent=2))
        print(f"\nmetrics written to {out}")
    return 0
