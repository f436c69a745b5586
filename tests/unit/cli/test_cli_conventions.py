"""The command line as a user meets it, each command in its own process: global
options on either side, --version, --json, named argument errors, exit codes,
closed pipes, plain progress lines, the day reports and alert mails of `run` and
`backfill`, `import-dlrm` and gzipped or piped Criteo files."""

import base64
import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LPMON = str(Path(sys.executable).parent / "lpmon")
MODEL = "outliers"


def lpmon(*args, check=True, env=None, **kwargs):
    result = subprocess.run(
        [LPMON, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, **(env or {})),
        **kwargs,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "w"
    made = lpmon("world", "--root", root, "--scenario", MODEL, "--days", 3, "--examples-per-day", 30000)
    with open(root / "lpmon.toml", "a") as f:
        # days of 10,000 examples: a verdict may rest on an interval up to +-5 gates (the default, 2,
        # would pool days, and this world's first plan has only one day)
        f.write(
            "\n[defaults]\nsample_size = 10000\nmin_examples = 2000\nmax_halfwidth_gates = 5\n"
            'recipients = ["oncall@example.com"]\n'
            'runbook_url = "https://wiki.example.com/lpmon-runbook"\n'
        )
    lpmon("init", "--config", root / "lpmon.toml")
    return root / "lpmon.toml", made


def test_version():
    from lpmon import __version__

    assert lpmon("--version").stdout.strip() == f"lpmon {__version__}"


def test_world_progress_is_plain_lines_off_a_terminal(world):
    _, made = world
    assert "\r" not in made.stderr
    assert [line for line in made.stderr.splitlines() if line.startswith("world ")] == [
        f"world {MODEL}: day {d}/3" for d in (1, 2, 3)
    ]


def test_global_options_go_before_or_after_the_command(world):
    config, _ = world
    before = lpmon("--config", config, "--json", "status").stdout
    after = lpmon("status", "--config", config, "--json").stdout
    mixed = lpmon("-q", "--json", "status", "--config", config).stdout
    assert json.loads(before) == json.loads(after) == json.loads(mixed)
    assert set(json.loads(before)) == {MODEL}
    # -v: lpmon's log on stderr, never in stdout's JSON
    assert json.loads(lpmon("-v", "status", "--json", "--config", config).stdout) == json.loads(before)


def test_argument_errors_name_the_argument_and_exit_2(world):
    config, _ = world
    bad = lpmon("run", "--config", config, "--model", MODEL, "--date", "2026-13-02", check=False)
    assert bad.returncode == 2 and "argument --date" in bad.stderr and "2026-13-02" in bad.stderr, bad.stderr
    bad = lpmon("plans", "diff", "--config", config, "--model", MODEL, "v1", "x2", check=False)
    assert bad.returncode == 2 and "not a plan version: 'x2'" in bad.stderr
    bad = lpmon(
        "backfill", "--config", config, "--model", MODEL, "--start", "2026-11-02", "--end", "2026-11-01", check=False
    )
    assert bad.returncode == 1 and "--end 2026-11-01 is before --start 2026-11-02" in bad.stderr
    unknown = lpmon("run", "--config", config, "--model", "nope", "--date", "2026-11-01", check=False)
    assert unknown.returncode == 1 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_closed_pipe_ends_quietly(world):
    config, _ = world
    proc = subprocess.Popen(
        [LPMON, "status", "--json", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # the reader is gone before lpmon writes (like `| head` that has had enough)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err
    # and through a shell pipe
    out = subprocess.run(
        f"'{LPMON}' status --json --config '{config}' | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout == "{" and "Traceback" not in out.stderr


@pytest.mark.slow
def test_backfill_and_run_write_reports_send_one_mail_a_day_and_speak_json(world, smtp_server):
    """~25 s: three days backfilled (onboarding waits, then promotes), a day without traffic."""
    config, _ = world
    out = lpmon(
        "backfill", "--config", config, "--model", MODEL, "--start", "2026-11-01", "--end", "2026-11-03", "--json"
    )
    days = json.loads(out.stdout)
    assert [d["date"] for d in days] == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert set(days[0]) == {
        "model",
        "date",
        "status",
        "action",
        "dne_pct",
        "plan_version",
        "new_plan_version",
        "promoted",
        "examples_scored",
        "looks",
        "stop_reason",
        "active_plan",
        "message",
        "report",
        "alerts",
    }
    for d in days:  # the DAG's outputs: a report for every day, the day's events mailed once, as one mail
        assert Path(d["report"]).is_file() and d["report"].endswith(f"{MODEL}/{d['date']}.html")
    mailed = [d for d in days if d["alerts"]]
    assert mailed and all(set(d["alerts"].values()) == {"sent"} for d in mailed)
    # onboarding waits two days and onboards on the third: a mail when it starts waiting, one when it onboards
    assert [d["alerts"] for d in days] == [{"ONBOARDING": "sent"}, {}, {"ONBOARDED": "sent"}], days
    assert len(smtp_server.messages) == len(mailed)
    assert [m["X-Lpmon-Event"].split("/")[1] for m in smtp_server.messages] == [d["date"] for d in mailed]
    # a real day's mail: the first line says what happened, the headers thread the model's mails
    from lpmon.report.alerts import thread_id
    from support.mail import screenshot

    last = smtp_server.messages[-1]
    assert last["References"] == thread_id(MODEL) and last["Date"] and last["Message-ID"]
    assert "\n" not in last["Subject"] and last["List-Id"].endswith(f"<{MODEL}.lpmon>")
    text = last.get_body(("plain",)).get_content()
    assert days[-1]["promoted"], days[-1]
    assert re.match(
        rf"onboarded: v{days[-1]['new_plan_version']}, the first quantized plan, passed validation on held-out "
        r"traffic and now serves \(\d+ % of the fp32 bytes\)",
        text.splitlines()[0],
    ), text
    assert re.search(r"\nbytes: +v\d serves \d+ % of the fp32 bytes \([\d.]+ MB of [\d.]+ MB; all-int8", text)
    assert f"serving reloads {config.parent / 'plans' / MODEL / 'active.json'}; no action needed" in text
    assert "runbook: https://wiki.example.com/lpmon-runbook" in text
    assert f"lpmon page: http://localhost:8080/lpmon/models/{MODEL}#day-" in text  # [airflow] base_url's default
    (png,) = [p for p in last.walk() if p.get_content_type() == "image/png"]
    html = (
        last.get_body(("html",))
        .get_content()
        .replace(
            f"cid:{png['Content-ID'][1:-1]}", "data:image/png;base64," + base64.b64encode(png.get_content()).decode()
        )
    )
    screenshot(html, "cli-backfill-mail")
    # plain-line progress off a terminal, one line a day
    assert [line for line in out.stderr.splitlines() if line.startswith("backfill ")] == [
        f"backfill {MODEL}: 2026-11-0{i} ({i}/3)" for i in (1, 2, 3)
    ]
    # a rerun mails nothing again; --no-alerts sends nothing, still writes the report
    lpmon("run", "--config", config, "--model", MODEL, "--date", "2026-11-03")
    assert len(smtp_server.messages) == len(mailed)

    # A day without traffic: the reason, and the plan in force (not "vNone").
    active = json.loads(lpmon("status", "--json", "--config", config).stdout)[MODEL]["active_plan"]
    text = lpmon("run", "--config", config, "--model", MODEL, "--date", "2026-11-25", "--no-alerts").stdout
    assert "vNone" not in text and "no traffic for 2026-11-25" in text
    assert active, "the third day onboards the model"
    assert f"active plan v{active['version']} (not scored)" in text
    assert len(smtp_server.messages) == len(mailed)
    assert (config.parent / "work" / "reports" / MODEL / "2026-11-25.html").is_file()
    status = lpmon("status", "--config", config).stdout  # the last run had no traffic: the last verdict too
    assert "not judged: " in status and "last judged day: 2026-11-03" in status
    assert (
        json.loads(lpmon("status", "--json", "--config", config).stdout)[MODEL]["last_judged"]["date"] == "2026-11-03"
    )
    # the real day report, drawn by Chromium: status colour, navigation to the neighbouring days
    from support.mail import screenshot

    page = (config.parent / "work" / "reports" / MODEL / "2026-11-02.html").read_text()
    assert 'id="previous-day" href="2026-11-01.html"' in page and 'id="next-day" href="2026-11-03.html"' in page
    assert "no action needed" in page and "serving stays on fp32 (no plan) until a plan passes" in page
    screenshot(page, "cli-day-report")

    # onboard on an onboarded model says nothing was done; --json everywhere
    said = lpmon("onboard", "--config", config, "--model", MODEL, "--date", "2026-11-03")
    assert "nothing done" in said.stdout
    data = json.loads(lpmon("--json", "onboard", "--config", config, "--model", MODEL, "--date", "2026-11-03").stdout)
    assert data["outcome"] == "nothing done" and data["active_plan"] == active["version"]
    listed = json.loads(lpmon("plans", "list", "--json", "--config", config, "--model", MODEL).stdout)
    assert listed[0]["version"] == 1 and {"status", "date", "reason", "pinned"} <= set(listed[0])
    diff = json.loads(lpmon("plans", "diff", "v1", "1", "--json", "--config", config, "--model", MODEL).stdout)
    assert diff == {"model": MODEL, "from": 1, "to": 1, "changes": []}
    assert lpmon("plans", "diff", "v1", "1", "--config", config, "--model", MODEL).stdout.strip() == "no differences"
    shown = json.loads(lpmon("plans", "show", "v1", "--json", "--config", config, "--model", MODEL).stdout)
    assert shown["version"] == 1
    # long layer lists are grouped: every table raised to fp16 in a user's plan
    plan = json.loads(lpmon("plans", "show", "--config", config, "--model", MODEL).stdout)
    for name, layer in plan["layers"].items():
        if name.startswith("emb_l."):
            layer.update(precision="fp16", scheme="weight_fp16")
    mine = config.parent / "all-tables-fp16.json"
    mine.write_text(json.dumps(plan))
    imported = json.loads(lpmon("plans", "import", mine, "--json", "--config", config, "--model", MODEL).stdout)
    version = imported["version"]
    lpmon("plans", "promote", f"v{version}", "--force", "--config", config, "--model", MODEL)
    tables = sum(name.startswith("emb_l.") for name in plan["layers"])
    assert f"{tables} embedding tables fp16" in lpmon("status", "--config", config).stdout
    assert lpmon("plans", "diff", "1", f"v{version}", "--config", config, "--model", MODEL).stdout.splitlines() == [
        f"{tables} embedding tables (emb_l.0..emb_l.{tables - 1}): precision int8 -> fp16"
    ]
    history = json.loads(lpmon("report", "--json", "--config", config, "--model", MODEL).stdout)
    assert [h["logical_date"] for h in history][-1] == "2026-11-25"
    assert json.loads(lpmon("init", "--json", "--config", config).stdout)["integrity"] == "ok"


def test_exit_codes_with_fail_on_degraded():
    """0 ok, 1 a failed day (wins), 3 a DEGRADED day with --fail-on-degraded."""
    from types import SimpleNamespace

    from lpmon.cli import EXIT_DEGRADED, EXIT_ERROR, EXIT_OK, _exit

    on, off = SimpleNamespace(fail_on_degraded=True), SimpleNamespace(fail_on_degraded=False)
    degraded, healthy, failed = {"status": "DEGRADED"}, {"status": "HEALTHY"}, {"status": "failed"}
    assert _exit([healthy, degraded], off) == EXIT_OK
    assert _exit([healthy, degraded], on) == EXIT_DEGRADED == 3
    assert _exit([degraded, failed], on) == EXIT_ERROR == 1
    assert "--fail-on-degraded" in lpmon("run", "--help").stdout and "--no-alerts" in lpmon("backfill", "--help").stdout


def _criteo_lines(n, seed=0):
    import random

    rng = random.Random(seed)
    lines = []
    for i in range(n):
        ints = [str(rng.randint(-1, 50)) if rng.random() > 0.1 else "" for _ in range(13)]
        cats = [f"{rng.getrandbits(32):08x}" if rng.random() > 0.1 else "" for _ in range(26)]
        lines.append("\t".join([str(int(rng.random() < 0.2))] + ints + cats) + "\n")
    return "".join(lines)


def test_import_criteo_reads_gz_and_stdin(tmp_path):
    from lpmon.traffic import TrafficStore

    text = _criteo_lines(300)
    gz = tmp_path / "day_0.gz"
    with gzip.open(gz, "wt") as f:
        f.write(text)
    out = json.loads(
        lpmon(
            "import-criteo", gz, "--store", tmp_path / "t", "--day", "2026-11-01", "--table-rows", 1000, "--json"
        ).stdout
    )
    assert out["rows"] == 300
    piped = lpmon(
        "import-criteo", "-", "--store", tmp_path / "t", "--day", "2026-11-02", "--table-rows", 1000, input=text
    )
    assert "imported 300 rows" in piped.stdout and "\r" not in piped.stderr
    assert piped.stderr.splitlines() == ["import-criteo -: 300 rows"]
    quiet = lpmon(
        "-q", "import-criteo", "-", "--store", tmp_path / "t", "--day", "2026-11-04", "--table-rows", 1000, input=text
    )
    assert quiet.stderr == "" and "imported 300 rows" in quiet.stdout
    store = TrafficStore(tmp_path / "t")
    assert store.row_count("2026-11-01") == store.row_count("2026-11-02") == 300
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(text.encode())[:200])
    bad = lpmon("import-criteo", broken, "--store", tmp_path / "t", "--day", "2026-11-03", check=False)
    assert bad.returncode == 1 and "broken.gz" in bad.stderr and "Traceback" not in bad.stderr
    bad = lpmon(
        "import-criteo", tmp_path / "t" / "x.tsv", "--store", tmp_path / "t", "--day", "2026-11-03", check=False
    )
    assert bad.returncode == 1 and "no such file" in bad.stderr


def _checkpoint(path, tables=3, dense=3, dim=4):
    import torch

    g = torch.Generator().manual_seed(0)
    vectors = 1 + tables
    state = {f"emb_l.{t}.weight": torch.randn(20, dim, generator=g) for t in range(tables)}
    state.update(
        {
            "bot_l.0.weight": torch.randn(8, dense, generator=g),
            "bot_l.0.bias": torch.zeros(8),
            "bot_l.2.weight": torch.randn(dim, 8, generator=g),
            "bot_l.2.bias": torch.zeros(dim),
            "top_l.0.weight": torch.randn(6, dim + vectors * (vectors - 1) // 2, generator=g),
            "top_l.0.bias": torch.zeros(6),
            "top_l.2.weight": torch.randn(1, 6, generator=g),
            "top_l.2.bias": torch.zeros(1),
        }
    )
    torch.save({"state_dict": state}, path)
    return path


def _traffic(root, sparse, dense):
    import numpy as np
    import pyarrow as pa

    from lpmon.traffic import TrafficStore

    n = 50
    data = {"request_id": np.arange(n), "label": np.zeros(n, dtype=np.int8)}
    data.update({name: np.ones(n, dtype=np.float32) for name in dense})
    data.update({name: np.ones(n, dtype=np.int64) for name in sparse})
    TrafficStore(root).write_day("2026-11-01", pa.table(data))
    return root


@pytest.mark.slow
def test_import_dlrm_matches_the_traffic_columns_or_says_which_do_not(tmp_path):
    """~20 s: seven processes that each import PyTorch."""
    from lpmon.model import Model

    ckpt = _checkpoint(tmp_path / "model.pt")
    traffic = _traffic(tmp_path / "traffic", ["sparse_a", "sparse_b", "sparse_c"], ["dense_x0", "dense_x1", "dense_x2"])
    out = json.loads(lpmon("import-dlrm", ckpt, "--out", tmp_path / "snap", "--from-traffic", traffic, "--json").stdout)
    assert out["tables"] == ["sparse_a", "sparse_b", "sparse_c"] and out["dense"] == [
        "dense_x0",
        "dense_x1",
        "dense_x2",
    ]
    assert "in the traffic's order" in out["matched"] and out["interaction"] == "dot"
    assert [t.name for t in Model.load(tmp_path / "snap").spec.tables] == ["sparse_a", "sparse_b", "sparse_c"]
    # named on the command line
    named = lpmon(
        "import-dlrm", ckpt, "--out", tmp_path / "snap2", "--sparse-names", "sparse_a", "sparse_b", "sparse_c"
    )
    assert "3 tables" in named.stdout
    # defaults: a note that the traffic needs the sparse_0.. columns
    plain = lpmon("import-dlrm", ckpt, "--out", tmp_path / "snap3")
    assert "sparse_0..sparse_2" in plain.stderr
    # a traffic with two sparse columns: which names have no column
    short = _traffic(tmp_path / "short", ["sparse_a", "sparse_b"], ["dense_0", "dense_1", "dense_2"])
    bad = lpmon("import-dlrm", ckpt, "--out", tmp_path / "snap4", "--from-traffic", short, check=False)
    assert bad.returncode == 1 and "3 embedding tables" in bad.stderr and "2 sparse columns" in bad.stderr
    assert "no column for sparse_0, sparse_1, sparse_2" in bad.stderr and "sparse_a, sparse_b" in bad.stderr
    assert not (tmp_path / "snap4").exists()
    # features named anything (TorchRec's cat_0, ...): the integer columns in the traffic's order
    other = _traffic(tmp_path / "other", ["cat_a", "cat_b", "cat_c"], ["dense_0", "dense_1", "dense_2"])
    lpmon("import-dlrm", ckpt, "--out", tmp_path / "snap6", "--from-traffic", other)
    assert [t.name for t in Model.load(tmp_path / "snap6").spec.tables] == ["cat_a", "cat_b", "cat_c"]
    wrong = lpmon("import-dlrm", ckpt, "--out", tmp_path / "snap5", "--sparse-names", "a", check=False)
    assert wrong.returncode == 1 and "1 sparse names for the checkpoint's 3 embedding tables" in wrong.stderr
    both = lpmon(
        "import-dlrm", ckpt, "--out", tmp_path / "s", "--sparse-names", "a", "--from-traffic", short, check=False
    )
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.slow
def test_a_degraded_day_exits_3_with_fail_on_degraded_mails_the_fix_then_resolved(tmp_path, smtp_server):
    """~40 s: the demo's outliers world: v1 onboarded on day 1, day 3 DEGRADED and fixed by a
    fallback (one mail), day 4 back under the gate (a RESOLVED mail in the same thread)."""
    from lpmon.report.alerts import thread_id

    root = tmp_path / "w"
    lpmon("-q", "world", "--root", root, "--scenario", MODEL, "--days", 4, "--seed", 1, "--examples-per-day", 50000)
    config = root / "lpmon.toml"
    with open(config, "a") as f:
        # the single look at 1.96 SE (a 20-day false-alarm budget), as in the other test worlds
        f.write(
            "\n[defaults]\nsample_size = 10000\nmin_examples = 1000\nsequential_run_length_days = 20\n"
            'recipients = ["oncall@example.com"]\n'
        )
    lpmon("init", "--config", config)
    lpmon("run", "--config", config, "--model", MODEL, "--date", "2026-11-01", "--fail-on-degraded", "--no-alerts")
    degraded = lpmon(
        "run", "--config", config, "--model", MODEL, "--date", "2026-11-03", "--fail-on-degraded", "--json", check=False
    )
    day = json.loads(degraded.stdout)
    assert degraded.returncode == 3 and day["status"] == "DEGRADED" and day["promoted"], degraded.stderr
    assert day["alerts"] == {"DEGRADED": "sent", "PROMOTION": "sent", "FALLBACK": "sent"}
    (mail,) = smtp_server.messages
    text = mail.get_body(("plain",)).get_content()
    first = text.splitlines()[0]
    assert re.match(
        rf"dNE {day['dne_pct']:.4f} % over the 0.05 % gate under v1; v2 now serving \(\d+ % of the fp32 bytes\): ",
        first,
    )
    assert first.endswith(f"serving reloads {root / 'plans' / MODEL / 'active.json'}; no action needed")
    assert "the day's sample under v1: dNE" in text
    healthy = lpmon("run", "--config", config, "--model", MODEL, "--date", "2026-11-04", "--fail-on-degraded", "--json")
    assert json.loads(healthy.stdout)["alerts"] == {"RESOLVED": "sent"}
    resolved = smtp_server.messages[1]
    assert resolved["Subject"].startswith(f"[lpmon] {MODEL} 2026-11-04: resolved")
    assert resolved.get_body(("plain",)).get_content().startswith("back under the 0.05 % gate: dNE ")
    assert "(DEGRADED on 2026-11-03); no action needed" in resolved.get_body(("plain",)).get_content()
    assert resolved["References"] == mail["References"] == thread_id(MODEL)
    assert resolved["Message-ID"] != mail["Message-ID"]
