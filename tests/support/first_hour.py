"""The README's "Your first hour": its shell block, and the inputs it assumes (a DLRM
checkpoint and two gzipped Criteo days), for the tests that run it."""

import gzip
import re
from pathlib import Path

from support import REPO

README = REPO / "README.md"


def first_hour_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Your first hour") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def first_hour_inputs(folder: Path) -> None:
    import random

    import torch

    rng = random.Random(0)
    for day in (0, 1):
        lines = []
        for _ in range(6000):
            ints = [str(rng.randint(0, 30)) if rng.random() > 0.1 else "" for _ in range(13)]
            cats = [f"{rng.getrandbits(24):06x}" if rng.random() > 0.05 else "" for _ in range(26)]
            lines.append("\t".join([str(int(rng.random() < 0.25))] + ints + cats) + "\n")
        with gzip.open(folder / f"day_{day}.gz", "wt") as f:
            f.write("".join(lines))
    g, dim, tables = torch.Generator().manual_seed(0), 8, 26
    vectors = 1 + tables
    state = {f"emb_l.{t}.weight": 0.1 * torch.randn(1000, dim, generator=g) for t in range(tables)}
    state.update(
        {
            "bot_l.0.weight": 0.3 * torch.randn(16, 13, generator=g),
            "bot_l.0.bias": torch.zeros(16),
            "bot_l.2.weight": 0.3 * torch.randn(dim, 16, generator=g),
            "bot_l.2.bias": torch.zeros(dim),
            "top_l.0.weight": 0.1 * torch.randn(16, dim + vectors * (vectors - 1) // 2, generator=g),
            "top_l.0.bias": torch.zeros(16),
            "top_l.2.weight": 0.3 * torch.randn(1, 16, generator=g),
            "top_l.2.bias": torch.full((1,), -1.0),
        }
    )
    torch.save(state, folder / "model.pt")
