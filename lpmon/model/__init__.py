"""DLRM-style recommendation models: spec, snapshots, batches, forward passes."""

from .batch import Batch, SparseFeature
from .backends import forward_fp32, forward_quantized, load_snapshot
from .forward import Executor, ForwardResult, LayerTap
from .snapshot import Model
from .spec import ModelSpec, SpecError, TableSpec

__all__ = ["Batch", "Executor", "ForwardResult", "LayerTap", "Model", "ModelSpec", "SparseFeature",
           "SpecError", "TableSpec", "forward_fp32", "forward_quantized", "load_snapshot"]
