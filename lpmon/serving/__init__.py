"""What serving runs: the active plan as a TorchScript module, and scores written for checks.

torchmodule  the model under a plan as a torch module of PyTorch's FBGEMM ops
             (needs `pip install 'lpmon[torch]'`; torch is imported there and in torchscript only)
tbe          row-wise tables in fbgemm_gpu's table-batched modules (embedding_layout "tbe")
torchscript  that module exported as TorchScript, checked against lpmon's executor, and its manifest
scores       a day's sample as lpmon scores it (request_id, label, p_fp32, p_q), as Parquet
"""

TORCH_EXTRA = "pip install 'lpmon[torch]'"


def require_torch():
    """The torch module, or an ImportError that says what to install."""
    try:
        import torch
    except ImportError:
        raise ImportError(f"this needs PyTorch's CPU build: {TORCH_EXTRA} (torch==2.13.0)") from None
    return torch
