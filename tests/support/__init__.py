"""What several test files share: worlds, Airflow stacks, fault drivers, tables, assertions.

REPO: the repository's root."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
