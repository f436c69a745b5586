"""No secrets in the repository: every credential comes from the environment or
an Airflow connection (see .env.example and docker-compose.yml). Masking in
task logs is tested in tests/integration/test_dags.py (the failing-task test)."""

import re
import subprocess
from pathlib import Path

import pytest

from support import REPO

pytestmark = pytest.mark.faults

PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "password in a URL": re.compile(r"://[^/\s:@'\"]+:(?!\$\{|\*+@)[^@\s/'\"{}]+@"),  # not ${VAR}, not ***
    "password literal": re.compile(
        r"(?i)\b\w*(password|passwd|secret|token)\w*['\"]?\s*[:=]\s*['\"]"
        r"(?!change-me|not-a-)[^'\"\s$<{*]{6,}['\"]"
    ),
    "password in an env file": re.compile(
        r"(?m)^\s*[A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*\s*=\s*"
        r"(?!\$|change-me|$)\S+"
    ),
}
ALLOWED = {  # (file, text matched): reviewed, not secrets
    ".env.example",  # placeholders only: every value is change-me-...
}


def tracked_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in names.splitlines() if (REPO / name).is_file()]


def test_no_credentials_are_committed():
    found = []
    for path in tracked_files():
        relative = str(path.relative_to(REPO))
        if relative in ALLOWED or path.suffix in {".png", ".npz", ".parquet"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for name, pattern in PATTERNS.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{relative}:{line}: {name}: {match.group(0)[:60]}")
    assert not found, "\n".join(found)


def test_the_example_environment_holds_placeholders_only():
    for line in (REPO / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert value.startswith("change-me"), line


def test_the_scanner_finds_what_it_looks_for():
    # Put together here, so that this file does not hold what the scan looks for.
    samples = [
        "postgresql://lpmon:" + "hunter2hunter2@db/lpmon",
        "smtp_password = " + '"correct-horse-battery"',
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "AKIA" + "ABCDEFGHIJKLMNOP",
    ]
    assert all(any(p.search(s) for p in PATTERNS.values()) for s in samples)
    harmless = [
        "postgresql+psycopg://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/lpmon",
        "password=change-me-postgres",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgresql+psycopg://postgres:***@127.0.0.1:5432/lpmon",
    ]
    assert not any(p.search(s) for p in PATTERNS.values() for s in harmless)
