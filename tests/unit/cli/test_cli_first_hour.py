"""The README's "Your first hour", run as written: its shell block, line by line,
in a folder holding a DLRM checkpoint and two gzipped Criteo days."""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

README = REPO / "README.md"


def first_hour_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Your first hour") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def _inputs(folder: Path) -> None:
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


@pytest.mark.slow
def test_the_readme_first_hour_works_as_written(tmp_path):
    commands = first_hour_commands()
    assert [c.split()[0] for c in commands].count("lpmon") >= 8
    _inputs(tmp_path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("LPMON_CONFIG", None)
    outputs = []
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    joined = "\n".join(outputs)
    assert "imported 6,000 rows" in joined and "matched to the traffic: 26 sparse columns by name" in joined
    assert (tmp_path / "work" / "reports" / "ctr" / "2026-11-02.html").is_file()
    assert "2026-11-02" in outputs[-1] and "ctr" in outputs[-2]
