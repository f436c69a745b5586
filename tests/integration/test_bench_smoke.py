"""The benchmark still runs (tiny sizes; no timing is asserted)."""

import subprocess
import sys

import pytest

from support import REPO

ROOT = REPO


def test_bench_metrics_runs():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_metrics.py"), "--sizes", "2e4", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "lpmon compare, 2 threads" in done.stdout
    assert "targets (largest N):" in done.stdout


@pytest.mark.slow
def test_bench_calibrate_runs():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_calibrate.py"), "--n", "2e4", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    for method in ("minmax", "l2_fast", "kl", "mse"):
        assert method in done.stdout


def test_bench_quant_runs():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_quant.py"),
            "--rows",
            "2000",
            "--bags",
            "64",
            "--batch",
            "16",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "int4 lookup, zipf ids" in done.stdout and "int8 linear 1024 -> 256" in done.stdout


def test_bench_model_runs():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_model.py"),
            "--examples",
            "512",
            "--batch",
            "256",
            "--rows",
            "1000",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "int8 FC + int4 embeddings" in done.stdout and "int8 / fp32" in done.stdout


@pytest.mark.slow
def test_bench_pipeline_runs():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_pipeline.py"), "--sizes", "3000", "--rows", "1000"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "3,000" in done.stdout


def test_bench_decisions_evidence_runs():
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_decisions.py"),
            "--evidence",
            "--sizes",
            "2000",
            "--reps",
            "2",
            "--days",
            "8",
            "--truth-examples",
            "100000",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "near_gate" in done.stdout and "small_excess" in done.stdout and "false DEG/100mm" in done.stdout
    assert "scored/day" in done.stdout and "PASS near gate, 2,000 initial" in done.stdout
