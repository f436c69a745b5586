import json

from lpmon import cli, demo


def test_demo_command_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert cli.main(["demo", "--days", "4", "--examples-per-day", "20000", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dNE %" in printed and "last day by surface" in printed
    written = json.loads(out.read_text())
    assert len(written["days"]) == 4
    assert set(written["last_day_by_surface"]) == set(demo.SURFACES)
    assert all(day["n"] == 20000 for day in written["days"])


def test_demo_drift_degrades_the_stale_plan():
    # The story the demo tells must hold: stale ranges hurt more as traffic drifts.
    results, _ = demo.run(days=14, examples_per_day=200_000, seed=7)
    assert results[0].dne_pct_hi > 0 > results[0].dne_pct_lo - 0.05
    assert results[-1].dne_pct_lo > demo.GATE_PCT
    assert results[-1].kl_gap_pct > 5 * results[0].kl_gap_pct


def test_demo_rejects_bad_arguments(capsys):
    assert cli.main(["demo", "--days", "0"]) == 2
    assert "--days must be >= 1" in capsys.readouterr().err


def test_progress_draws_on_a_terminal_and_stays_silent_in_pipes():
    import io

    from lpmon.progress import progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pipe, terminal = io.StringIO(), Terminal()
    for stream in (pipe, terminal):
        with progress(3, "backfill m", stream=stream) as advance:
            for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
                advance(day)
    assert pipe.getvalue() == ""
    assert "backfill m" in terminal.getvalue() and "2026-11-0" in terminal.getvalue()
