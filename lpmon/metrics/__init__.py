"""Accuracy metrics of a quantized model against its fp32 reference.

normalized_entropy(p, y) -> float
compare(p_ref, p_q, y, *, level=0.95, n_threads=1) -> Comparison
compare_by_segment(p_ref, p_q, y, segment_ids, ...) -> {segment: Comparison}

Computed in one pass by Cython/C kernels (lpmon._kernels.logloss); the NumPy
float64 versions in lpmon.metrics.reference are the test oracle.
"""

from .comparison import Comparison
from .layers import layer_metrics
from .logloss import EPS, compare, compare_by_segment, normalized_entropy

__all__ = ["EPS", "Comparison", "compare", "compare_by_segment", "layer_metrics", "normalized_entropy"]
