"""Quantization schemes, kernels and plans.

qparams   affine parameters (FBGEMM's choice) and fake quantization
rowwise   FBGEMM's fused row-wise embedding formats and pooled lookups
tbe       FBGEMM's table-batched inference rows (TorchRec's serving layout: embedding_layout "tbe")
linear    exact int8 linear layers with per-channel weights, saturation counts
halfprec  fp16 / bf16 weight storage with fp32 compute
plan      QuantPlan: per-layer precision and parameters, JSON round trip
"""

from .plan import ActivationRange, LayerPlan, PlanError, Provenance, QuantPlan
from .qparams import QParams, choose_qparams, fake_quantize, integer_range

__all__ = [
    "ActivationRange",
    "LayerPlan",
    "PlanError",
    "Provenance",
    "QParams",
    "QuantPlan",
    "choose_qparams",
    "fake_quantize",
    "integer_range",
]
