"""The README's "Your first hour", run as written: its shell block, line by line,
in a folder holding a DLRM checkpoint and two gzipped Criteo days."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.first_hour import first_hour_commands, first_hour_inputs


@pytest.mark.slow
def test_the_readme_first_hour_works_as_written(tmp_path):
    commands = first_hour_commands()
    assert [c.split()[0] for c in commands].count("lpmon") >= 8
    first_hour_inputs(tmp_path)
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
