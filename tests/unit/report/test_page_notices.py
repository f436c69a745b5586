"""What the lpmon page says about serving and pins (the rendering; the data comes
from lpmon.pipeline.export.serving_problem and the store's pins)."""

from lpmon.report.page import model_page


def data(**extra):
    return {
        "model": "ctr",
        "gate_pct": 0.05,
        "history": [],
        "decisions": [],
        "active_plan": None,
        "alerts": [],
        "mail_problem": "",
        **extra,
    }


def test_a_failed_export_and_the_pins_are_on_the_page():
    page = model_page(
        data(serving_problem="v2 active in the store, serving file still v1: <denied>", pinned=["bot_l.0", "top_l.0"])
    )
    assert 'id="serving-notice"' in page and "serving file still v1: &lt;denied&gt;" in page
    assert "pinned by the user (lpmon never changes them): bot_l.0, top_l.0" in page
    assert "(none: serving fp32)" in page


def test_no_notice_when_serving_is_in_step():
    page = model_page(data(serving_problem="", pinned=[]))
    assert "serving-notice" not in page and "pinned by the user" not in page
