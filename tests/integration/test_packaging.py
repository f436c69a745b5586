"""The sdist carries the kernel sources and builds; the wheel alone, installed into a clean
venv with no extras, runs every command; every kernel ISA copy loads."""

import functools
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from lpmon._kernels import logloss
from support import REPO
from support.first_hour import first_hour_commands, first_hour_inputs

ROOT = REPO


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The sdist of a copy of the tracked files (as a clean clone would be) and the wheel
    built from it: built once for this module's tests (the kernels take a minute to compile)."""
    tmp_path = tmp_path_factory.mktemp("packaging")
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
    return sdist, wheel


@pytest.mark.slow
def test_sdist_contains_kernel_sources_and_builds(built, tmp_path):
    sdist, wheel = built
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


def clean_venv(folder: Path, wheel: Path) -> dict:
    """A new venv (no system site-packages) holding `pip install lpmon` from the wheel and
    what its dependencies pull in (pinned by constraints.txt); the environment to run it in."""
    venv = folder / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", "--find-links", str(wheel.parent)]
        + ["-c", str(ROOT / "constraints.txt"), "lpmon"],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LPMON_CONFIG", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    return env


def lpmon_in(env: dict, folder: Path, command: str, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == code, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_the_wheel_alone_runs_every_command_in_a_clean_venv(built, tmp_path):
    """`pip install lpmon` (no extras) runs every command on the embedded default (a SQLite
    store, local files): the daily job on a synthetic world, and the README's first hour up
    to its checkpoint import, which says in one line how to get PyTorch. With
    LPMON_TEST_CLEAN_VENV_TORCH=1, PyTorch is then installed as that line says and the rest of
    the first hour runs (some 1-2 minutes more; tests/unit/cli/test_cli_first_hour.py runs it
    all in the development venv anyway). `lpmon demo` runs Airflow: the airflow extra."""
    env = clean_venv(tmp_path, built[1])
    run = functools.partial(lpmon_in, env, tmp_path)
    assert run("which lpmon").stdout.strip() == str(tmp_path / "venv" / "bin" / "lpmon")
    run("python -c 'import torch'", code=1)  # truly without extras
    config = "--config w/lpmon.toml"
    for command in [
        "lpmon --version",
        "lpmon world --root w --scenario stable --days 2 --examples-per-day 20000 --tables 4",
        f"lpmon {config} init",
        f"lpmon {config} onboard --model stable --date 2026-11-01",
        f"lpmon {config} backfill --model stable --start 2026-11-01 --end 2026-11-02",
        f"lpmon {config} run --model stable --date 2026-11-02 --no-alerts",
        f"lpmon {config} status",
        f"lpmon {config} report --model stable",
        f"lpmon {config} plans list --model stable",
        f"lpmon {config} plans export --model stable --out plan.json",
        f"lpmon {config} score --model stable --date 2026-11-02 --out scores.parquet",
        "lpmon convert-snapshot w/models/stable/snapshot --out converted",
    ]:
        run(command)
    assert (tmp_path / "w" / "work" / "reports" / "stable" / "2026-11-02.html").is_file()
    first_hour_inputs(tmp_path)  # a DLRM checkpoint and two gzipped Criteo days
    commands = first_hour_commands()
    checkpoint = next(i for i, c in enumerate(commands) if c.startswith("lpmon import-dlrm"))
    for command in commands[:checkpoint]:
        run(command)
    needs_torch = run(commands[checkpoint], code=1)
    assert needs_torch.stderr.count("\n") == 1 and "pip install torch==2.13.0" in needs_torch.stderr
    if os.environ.get("LPMON_TEST_CLEAN_VENV_TORCH") != "1":
        return
    run("python -m pip install -q -c " + str(ROOT / "constraints.txt") + " torch==2.13.0")
    for command in commands[checkpoint:]:
        run(command)
    assert (tmp_path / "work" / "reports" / "ctr" / "2026-11-02.html").is_file()


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
