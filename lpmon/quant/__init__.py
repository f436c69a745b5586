"""Quantization schemes and parameters."""

from .qparams import QParams, choose_qparams, fake_quantize, integer_range

__all__ = ["QParams", "choose_qparams", "fake_quantize", "integer_range"]
