"""What the mails and reports tell an operator (issue 31): what limited a verdict and
what to do, one mail when onboarding starts waiting and one when it onboards, no
contradictory texts, the bytes a plan serves, a rerun's mail replacing a failed one,
and no links into an Airflow that does not run."""

import pytest

from lpmon.pipeline.assembly import spec_units
from lpmon.pipeline.capacity import Capacity, of_precisions
from lpmon.policy import Rules
from lpmon.report.day import events, headline, summary
from lpmon.report.limits import DayCounts, Limit, limit_of
from lpmon.report.render import render_html, render_text
from support.mail import report

RULES = Rules(gate_pct=0.05, min_examples=1000, min_positives=100)


def test_a_big_day_with_a_small_sample_is_limited_by_the_sample_with_the_size_that_decides():
    # 10,000 of a 50,000-example day scored; dNE 23x the gate, interval straddling it.
    counts = DayCounts(examples=10_000, positives=800, sample_size=10_000, dne_pct=1.15, lo=-0.4, hi=2.7)
    limit = limit_of("INSUFFICIENT_DATA", counts, RULES)
    assert limit.cause == "sample" and "10,000 examples scored (sample_size 10,000)" in limit.what
    # se = 3.1 / 3.92 = 0.79; DEGRADED needs (1.15 - 0.05) / 3.29 = 0.334: n x 5.6 = ~56,000
    assert limit.advice.startswith("raise sample_size to ~56,000 to decide at this dNE (1.1500 %)")
    # The same numbers on a day that had only 10,000 examples: the traffic was the limit.
    small = DayCounts(examples=9_000, positives=700, sample_size=10_000, dne_pct=1.15, lo=-0.4, hi=2.7)
    assert limit_of("INSUFFICIENT_DATA", small, RULES).cause == "traffic"
    # adaptive sampling's own word wins over the guess
    capped = DayCounts(**{**small.__dict__, "stop_reason": "cap"})
    limit = limit_of("WARN", capped, RULES)
    assert limit.cause == "sample" and "(max_sample_size)" in limit.what
    assert limit.advice.startswith("raise max_sample_size to ~")  # sample_size above it would be refused


def test_one_class_is_a_labels_limit_few_positives_a_sample_one_and_a_decided_day_has_none():
    labels = DayCounts(examples=20_000, positives=0, sample_size=20_000)
    assert limit_of("INSUFFICIENT_DATA", labels, RULES).cause == "labels"
    # few positives in a small sample of a big day: the sample is the limit, sized by the positive rate
    few = DayCounts(examples=2_000, positives=20, sample_size=2_000, dne_pct=0.01, lo=-0.2, hi=0.22)
    assert limit_of("INSUFFICIENT_DATA", few, RULES).advice.startswith("raise sample_size to ~10,000")
    decided = DayCounts(examples=20_000, positives=900, sample_size=20_000, dne_pct=0.01, lo=-0.01, hi=0.03)
    assert limit_of("HEALTHY", decided, RULES) is None and limit_of("INSUFFICIENT_DATA", decided, RULES) is None


def test_the_subject_and_first_line_say_the_limit_not_not_enough_traffic():
    limit = Limit("sample", "sample too small: 10,000 examples scored", "raise sample_size to ~56,000")
    day = report(status="INSUFFICIENT_DATA", action="RECORD", new_plan_version=None, promoted=False, limit=limit)
    assert events(day) == ["INSUFFICIENT_DATA"]
    assert headline(day, "INSUFFICIENT_DATA") == "outliers 2026-11-05: not judged (sample too small)"
    first = summary(day, "INSUFFICIENT_DATA")
    assert first.startswith("not judged: sample too small") and "raise sample_size to ~56,000" in first
    assert "traffic" not in first
    text = render_text(day, "INSUFFICIENT_DATA")
    assert "what limited the verdict: sample too small" in text and "what to do: raise sample_size" in text


def test_onboarding_mails_once_when_waiting_starts_and_once_when_it_onboards():
    waits = Limit("onboarding", "onboarding: waiting for evidence (900 examples so far)", "no action needed")
    first = report(
        status="INSUFFICIENT_DATA",
        action="RECORD",
        plan_version=None,
        new_plan_version=None,
        promoted=False,
        active_version=None,
        message=waits.what,
        limit=waits,
    )
    assert events(first) == ["ONBOARDING"]
    assert events(report(**{**first.__dict__, "still_waiting": True})) == []  # the next days: no mail
    # The day it onboards: its own sample too small under the new plan is no contradiction.
    onboarded = report(
        status="INSUFFICIENT_DATA",
        action="ONBOARD",
        plan_version=1,
        new_plan_version=1,
        promoted=True,
        active_version=1,
        moved=[],
        capacity=Capacity(1_200_000, 4_800_000, 1_100_000),
        limit=Limit("traffic", "traffic too small: the day had 1,100 labelled examples, all of them scored", "x"),
    )
    assert events(onboarded) == ["ONBOARDED"]
    line = summary(onboarded, "ONBOARDED")
    assert line.startswith("onboarded: v1, the first quantized plan, passed validation") and "25 % of the fp32" in line
    assert "not enough traffic" not in line and "the day itself is not judged yet (traffic too small" in line
    assert headline(onboarded, "ONBOARDED") == "outliers 2026-11-05: onboarded: first quantized plan serving"


def test_capacity_counts_rowwise_scales_and_biases_and_is_shown_wherever_a_plan_is():
    from lpmon.model.spec import ModelSpec, TableSpec

    spec = ModelSpec(
        dense=("dense_0",),
        tables=(TableSpec("sparse_0", 1000, 16), TableSpec("sparse_1", 10, 16)),
        bottom_mlp=(16,),
        top_mlp=(8, 1),
    )
    units = spec_units(spec)
    fp32 = sum(u.rows * u.cols * 4 for u in units.values())
    int8 = sum(u.rows * u.cols + (8 * u.rows if u.kind == "embedding" else 0) for u in units.values())
    plan = {name: "int8" for name in units} | {"emb_l.1": "fp16"}
    served = of_precisions(units, plan)
    assert (served.fp32_bytes, served.int8_bytes) == (fp32, int8)
    assert served.bytes_served == int8 - 10 * (16 + 8) + 10 * 16 * 2
    assert served.describe(3).startswith(f"v3 serves {100 * served.bytes_served / fp32:.0f} % of the fp32 bytes")
    day = report(capacity=served, capacity_before=of_precisions(units, {}))
    text = render_text(day, "PROMOTION")
    assert "bytes:    v4 serves" in text and "before the change: v3 served 100 % of the fp32 bytes" in text
    assert "v4 now serving (" in summary(day, "PROMOTION")
    assert "bytes served" in render_html(day, "cid:x", "PROMOTION")


@pytest.mark.parametrize("field", ["examples_scored", "looks", "stop_reason"])
def test_adaptive_sampling_fields_are_optional(field):
    assert getattr(report(), field) is None
    assert "sample:" not in render_text(report())


def test_adaptive_sampling_is_said_in_words():
    day = report(examples_scored=20_000, looks=2, stop_reason="traffic_exhausted")
    assert "scored 20,000 examples in 2 looks (stopped: traffic exhausted)" in render_text(day)
    assert "scored 20,000 examples in 2 looks (stopped: traffic exhausted)" in render_html(day, "x")


def test_without_an_airflow_web_server_mails_link_the_report_file_only():
    day = report(web_ui=False, page_url="", report_url="", run_url="")
    text, html = render_text(day, "DEGRADED"), render_html(day, "cid:x", "DEGRADED")
    assert "Airflow's web server is not running" in text and "day report file: /srv/lpmon" in text
    assert "localhost:8080" not in text + html and 'id="no-airflow"' in html
