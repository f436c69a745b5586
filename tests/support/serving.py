"""Running exported TorchScript modules in a fresh interpreter that imports only torch."""

import subprocess
import sys
from pathlib import Path

# Runs in a fresh interpreter: only torch (and the standard library) is imported.
FRESH = """
import sys, torch
modules, inputs = sys.argv[1].split(","), torch.load(sys.argv[2])
out = {}
for path in modules:
    module = torch.jit.load(path)
    with torch.inference_mode():
        out[path] = module(inputs["dense_x"], inputs["lS_o"], inputs["lS_i"])
assert not [m for m in sys.modules if m.split(".")[0] in ("lpmon", "pyarrow", "pandas", "scipy")]
torch.save(out, sys.argv[3])
"""


def run_fresh(tmp_path, modules, batch) -> dict:
    """Each module's probabilities for the batch, computed in a fresh process: {path: array}."""
    import torch

    from lpmon.serving.torchmodule import torch_inputs

    dense, offsets, indices = torch_inputs(batch)
    inputs = tmp_path / "inputs.pt"
    torch.save({"dense_x": dense, "lS_o": offsets, "lS_i": indices}, inputs)
    out = tmp_path / "out.pt"
    subprocess.run(
        [sys.executable, "-c", FRESH, ",".join(str(m) for m in modules), str(inputs), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return {Path(k): v.numpy() for k, v in torch.load(out).items()}
