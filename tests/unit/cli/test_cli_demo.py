import subprocess
import sys
from pathlib import Path

import pytest

from lpmon import cli
from lpmon.demo import summary


@pytest.mark.slow
def test_the_main_job_runs_the_monitor_dag_day_by_day(tmp_path):
    """`lpmon demo` in its own process (Airflow reads its settings at import)."""
    lpmon = Path(sys.executable).parent / "lpmon"
    readme = tmp_path / "README.md"
    readme.write_text(f"# demo\n\n{summary.START_MARK}\nold\n{summary.END_MARK}\n")
    result = subprocess.run(
        [str(lpmon), "demo", "--root", str(tmp_path / "demo"), "--days", "3", "--update-readme", str(readme)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("2026-11-0")]
    assert len(lines) == 6 and all(line.rstrip().split()[-3] == "success" for line in lines), result.stdout
    assert {line.split()[1] for line in lines} == {"gradual_drift", "outliers"}
    reports = sorted((tmp_path / "demo" / "work" / "reports").glob("*/*.html"))
    assert len(reports) == 6 and "HTML reports:" in result.stdout
    assert (tmp_path / "demo" / "plans" / "outliers" / "active.json").exists()
    table = (tmp_path / "demo" / "demo-summary.md").read_text()  # the outcome table, printed and saved
    assert table.startswith("Outcome of `lpmon demo` (3 days, 50,000 examples a day") and table in result.stdout
    assert "| 2026-11-01 | outliers | 10,000 |" in table and summary.check_readme(readme, table) == ""
    # No Airflow web server runs in the demo: its mails link the report files, which exist, and say so.
    import email
    import email.policy
    import re

    mails = sorted((tmp_path / "demo" / "mail").glob("*.eml"))
    assert mails, result.stdout
    for path in mails:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert "localhost:8080" not in text + html and "http://" not in text
        assert "Airflow's web server is not running" in text and 'id="no-airflow"' in html
        (report,) = re.findall(r"^day report file: (.+)$", text, re.M)
        assert Path(report.strip()).is_file()  # the wire form ends lines with CRLF


def test_demo_rejects_bad_arguments(capsys):
    assert cli.main(["demo", "--days", "0"]) == 2
    assert "--days must be >= 1" in capsys.readouterr().err
    assert cli.main(["demo", "--sample-size", "10"]) == 2


def test_progress_draws_on_a_terminal_and_prints_plain_lines_in_pipes():
    import io

    from lpmon.cli.progress import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pipe, terminal = io.StringIO(), Terminal()
    for stream in (pipe, terminal):
        with progress(3, "backfill m", stream=stream) as advance:
            for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
                advance(day)
    assert pipe.getvalue().splitlines() == [f"backfill m: 2026-11-0{i} ({i}/3)" for i in (1, 2, 3)]
    quiet = io.StringIO()
    with progress(3, "m 2026-11-01", stream=quiet, plain=False) as advance:  # run's steps: a bar or nothing
        advance("sample")
    assert quiet.getvalue() == ""
    assert "backfill m" in terminal.getvalue() and "2026-11-0" in terminal.getvalue()
