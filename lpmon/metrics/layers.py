"""Per-layer error of a quantized forward pass: SQNR and saturation."""

from __future__ import annotations

import numpy as np


def layer_metrics(plan, fp32_taps, quant_taps, saturation) -> dict[str, dict]:
    """Per int8/fp16 FC layer of `plan`: its precision, the SQNR (dB) of its output
    against fp32's (taps of one forward pass each), and the share of its inputs the
    static range clipped below and above (saturation: lpmon.quant.linear.Saturation)."""
    out = {}
    for layer in plan.layers:
        if layer.kind != "linear":
            continue
        ref, q = fp32_taps[layer.name].output, quant_taps[layer.name].output
        noise = float(np.sum((ref.astype(np.float64) - q) ** 2))
        signal = float(np.sum(ref.astype(np.float64) ** 2))
        s = saturation.get(layer.name)
        out[layer.name] = {
            "precision": layer.precision,
            "sqnr_db": 10 * np.log10(signal / noise) if noise > 0 and signal > 0 else None,
            "saturation_below": s.below / s.total if s else 0.0,
            "saturation_above": s.above / s.total if s else 0.0,
        }
    return out
