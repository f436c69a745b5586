"""What limited a real day's verdict, read back from the store (lpmon.report.day.build):
onboarding still gathering evidence (one mail when it starts), then, once a plan
serves, a sample too small for a bigger day, with the sample size that would decide."""

import re

from lpmon.config import load
from lpmon.pipeline import open_store, run_day
from lpmon.report.day import build, events, summary
from support.world import day, world


def test_a_day_says_what_limited_its_verdict_and_what_to_do(tmp_path):
    config = world(
        tmp_path, f"sqlite:///{tmp_path / 'state.db'}", scenario="stable", days=4, per_day=20_000, sample=500
    )
    store = open_store(config)
    run_day(config, "stable", day(0))  # 500 examples cannot onboard a model: it waits, and says so once
    waiting = build(config, store, "stable", str(day(0)))
    assert waiting.limit.cause == "onboarding" and events(waiting) == ["ONBOARDING"], waiting
    assert waiting.capacity.bytes_served == waiting.capacity.fp32_bytes  # serving fp32
    run_day(config, "stable", day(1))
    assert events(build(config, store, "stable", str(day(1)))) == []  # still waiting: no second mail
    path = tmp_path / "lpmon.toml"
    path.write_text(path.read_text().replace("sample_size = 500", "sample_size = 15000"))
    assert run_day(load(path, environ={}), "stable", day(2)).promoted  # a bigger sample onboards it
    onboarded = build(load(path, environ={}), store, "stable", str(day(2)))
    assert "ONBOARDED" in events(onboarded) and "INSUFFICIENT_DATA" not in events(onboarded)
    assert onboarded.capacity.bytes_served < onboarded.capacity_before.bytes_served == onboarded.capacity.fp32_bytes
    # Back to 500 of the day's 20,000 examples: the sample, not the traffic, limits the verdict.
    # (window_days 1: the day is judged alone, not pooled with day 2's 15,000 examples)
    path.write_text(path.read_text().replace("sample_size = 15000", "sample_size = 500\nwindow_days = 1"))
    small = load(path, environ={})
    run_day(small, "stable", day(3))
    limited = build(small, store, "stable", str(day(3)))
    assert limited.status in ("INSUFFICIENT_DATA", "WARN") and limited.limit.cause == "sample", limited
    needed = int(re.search(r"raise sample_size to ~([\d,]+)", limited.limit.advice).group(1).replace(",", ""))
    assert needed > 500
    assert "sample too small: 500 examples scored (sample_size 500)" in summary(limited, "+".join(events(limited)))
