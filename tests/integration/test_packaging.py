"""The sdist carries the kernel sources and builds; every kernel ISA copy loads."""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from lpmon._kernels import logloss
from support import REPO

ROOT = REPO


@pytest.mark.slow
def test_sdist_contains_kernel_sources_and_builds(tmp_path):
    # Build from a copy of the tracked files, as a clean clone would be.
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    clone = tmp_path / "clone"
    for name in files:
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
        cwd=clone,
        check=True,
        capture_output=True,
    )
    (sdist,) = (tmp_path / "dist").glob("lpmon-*.tar.gz")
    names = {Path(n).name for n in tarfile.open(sdist).getnames()}
    assert {
        "logloss.pyx",
        "logloss_isa.c",
        "logloss_body.h",
        "lpmon_logloss.h",
        "logloss_dispatch.h",
        "lpmon_isa.h",
        "lpmon_fma.h",
        "affine_isa.c",
        "affine_body.h",
        "affine_dispatch.h",
        "rowwise_isa.c",
        "interaction.pyx",
        "interaction_isa.c",
        "interaction_body.h",
        "interaction_dispatch.h",
        "int8gemm.pyx",
        "int8gemm_isa.c",
        "int8gemm_body.h",
        "int8gemm_dispatch.h",
        "constraints.txt",
        "day.html",  # the report, mail and page templates (lpmon/report/templates)
        "summary.txt",
        "model.html",
    } <= names
    generated = {"logloss.c", "affine.c", "rowwise.c", "calibrate.c", "interaction.c", "int8gemm.c"}
    assert not generated & names  # generated, not shipped
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "wheels"),
            str(sdist),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("lpmon-*.whl")
    # The wheel alone (no source tree on the path) holds every subpackage and kernel.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import lpmon.metrics, lpmon.calibrate, lpmon.quant.rowwise, lpmon.model, lpmon.traffic, "
        "lpmon._kernels.interaction, lpmon._kernels.int8gemm, "
        "lpmon.demo.world, lpmon.cli, lpmon.report.templating as t; "
        "[t.environment().get_template(n) for n in ('day.html', 'day.txt', 'model.html', 'index.html')]; "
        "print(lpmon.metrics.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(target)),
        check=True,
    ).stdout
    assert out.startswith(str(target))


def test_lpmon_isa_environment_variable_selects_kernels():
    for isa in logloss.available_isas():
        env = dict(os.environ, LPMON_ISA=isa)
        out = subprocess.run(
            [sys.executable, "-c", "from lpmon._kernels import logloss; print(logloss.current_isa())"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == isa


def test_unknown_isa_is_a_clear_error():
    env = dict(os.environ, LPMON_ISA="avx9000")
    done = subprocess.run(
        [sys.executable, "-c", "import lpmon._kernels.logloss"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "instruction set 'avx9000' is not available" in done.stderr


def test_compose_services_match_ci_ports():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "127.0.0.1:5432:5432" in services["postgres"]["ports"]
    assert "127.0.0.1:6379:6379" in services["redis"]["ports"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-p 5432" in ci and "-p 6379" in ci and "make test" in ci
