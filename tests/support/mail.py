"""Day reports to render, and Chromium screenshots of pages (kept in artifacts/, git-ignored)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from lpmon.report.day import DayReport

from . import REPO

ARTIFACTS = REPO / "artifacts" / "mail"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

HISTORY = [
    {
        "logical_date": f"2026-11-0{d}",
        "status": s,
        "dne_pct": v,
        "dne_pct_lo": v - 0.1,
        "dne_pct_hi": v + 0.1,
        "plan_version": 3 if d < 5 else 4,
        "new_plan_version": 4 if d == 5 else None,
    }
    for d, s, v in (
        (1, "HEALTHY", 0.01),
        (2, "WARN", 0.1),
        (3, "HEALTHY", 0.02),
        (4, "WARN", 0.2),
        (5, "DEGRADED", 0.9),
    )
]


def report(**changes):
    values = dict(
        model_id="outliers",
        day="2026-11-05",
        status="DEGRADED",
        action="FALLBACK",
        reasons=[
            "dNE 0.9000 % [0.5000, 1.3000]: the whole interval is above the 0.05 % gate",
            "candidate dNE 0.0100 % [-0.0300, 0.0400] on 20,000 held-out examples: within the 0.05 "
            "% gate with confidence",
        ],
        gate_pct=0.05,
        dne_pct=0.9,
        dne_pct_lo=0.5,
        dne_pct_hi=1.3,
        plan_version=3,
        new_plan_version=4,
        promoted=True,
        active_version=4,
        moved=["bot_l.0 int8 -> fp16", "26 embedding tables int8 -> fp16"],
        worst_sqnr=[{"layer": "bot_l.0", "precision": "int8", "sqnr_db": 12.5}],
        worst_saturation=[{"layer": "bot_l.0", "precision": "int8", "saturation": 0.0123}],
        history=HISTORY,
        page_url="https://airflow.example.com/lpmon/models/outliers#day-2026-11-05",
        report_path="/srv/lpmon/work/reports/outliers/2026-11-05.html",
        report_url="http://airflow.test/lpmon/models/outliers/reports/2026-11-05.html",
        plans_file="plans/outliers/active.json",
        runbook_url="https://wiki.example.com/lpmon",
        segments=[
            {"segment": "US", "n": 6000, "dne_pct": 0.8, "dne_pct_lo": 0.3, "dne_pct_hi": 1.3},
            {"segment": "FR", "n": 4000, "dne_pct": 1.0, "dne_pct_lo": 0.2, "dne_pct_hi": 1.8},
        ],
        previous_day="2026-11-04",
        next_day="2026-11-06",
    )
    values.update(changes)
    return DayReport(**values)


def screenshot(html: str, name: str) -> Path:
    """The page as Chromium draws it, kept as an artifact."""
    if CHROMIUM is None:
        pytest.skip("no chromium (apt-get install -y chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page, png = ARTIFACTS / f"{name}.html", ARTIFACTS / f"{name}.png"
    page.write_text(html)
    png.unlink(missing_ok=True)
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={png}",
            "--window-size=900,1400",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert png.stat().st_size > 20_000 and png.read_bytes()[:4] == b"\x89PNG"
    return png
