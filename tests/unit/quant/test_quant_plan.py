import json
import math

import pytest

from lpmon.quant import ActivationRange, LayerPlan, PlanError, Provenance, QuantPlan


def plan(**changes):
    layers = (
        LayerPlan(
            "bot_l.0", "linear", "int8", activation=ActivationRange(-0.1, 3.0000000000000004, 0.011764706112444401, 9)
        ),
        LayerPlan("emb_l.0", "embedding", "int4", search=True),
        LayerPlan("emb_l.1", "embedding", "int8"),
        LayerPlan("top_l.1", "linear", "bf16"),
        LayerPlan("top_l.2", "linear", "fp32"),
    )
    values = dict(
        model_id="ctr",
        version=2,
        layers=layers,
        provenance=Provenance("l2", "2026-11-27: 100000 examples", "2026-11-28"),
    )
    values.update(changes)
    return QuantPlan(**values)


def test_json_round_trip_is_lossless():
    original = plan()
    text = original.to_json()
    again = QuantPlan.from_json(text)
    assert again == original
    assert again.layer("bot_l.0").activation.hi == 3.0000000000000004  # floats survive exactly
    assert again.to_json() == text
    assert again.layer("bot_l.0").scheme == "per_channel_symmetric"
    assert again.layer("emb_l.1").scheme == "rowwise"


def test_the_embedding_layout_round_trips_and_is_written_only_when_not_the_default():
    tbe = plan(embedding_layout="tbe")
    assert json.loads(tbe.to_json())["embedding_layout"] == "tbe"
    assert QuantPlan.from_json(tbe.to_json()) == tbe
    assert "embedding_layout" not in json.loads(plan().to_json())  # plans stored before it keep their JSON
    assert QuantPlan.from_json(plan().to_json()).embedding_layout == "prepack"
    assert plan().diff(tbe) == ["embedding_layout: prepack -> tbe"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(schema_version=99), "schema_version: 99 is not supported"),
        (lambda d: d.update(colour="red"), r"plan.colour: unknown field"),
        (lambda d: d["layers"]["emb_l.0"].update(bitz=4), r"layers.emb_l.0.bitz: unknown field"),
        (
            lambda d: d["layers"]["bot_l.0"]["activation"].update(scale=-1.0),
            r"layers.bot_l.0.activation.scale: must be positive",
        ),
        (
            lambda d: d["layers"]["bot_l.0"]["activation"].update(scale="0.1"),
            r"layers.bot_l.0.activation.scale: expected float, got str",
        ),
        (
            lambda d: d["layers"]["bot_l.0"]["activation"].update(zero_point=300),
            r"zero_point: 300 is outside \[0, 255\]",
        ),
        (lambda d: d["layers"]["bot_l.0"]["activation"].update(lo=5.0), r"lo 5.0 is above hi"),
        (
            lambda d: d["layers"]["top_l.1"].update(precision="int4"),
            r"layers.top_l.1.precision: 'int4' is not valid for a linear",
        ),
        (lambda d: d["layers"]["top_l.1"].update(scheme="rowwise"), r"layers.top_l.1.scheme: 'rowwise'"),
        (lambda d: d["layers"]["bot_l.0"].update(activation=None), r"needs a static activation range"),
        (lambda d: d.update(version=0), r"version: must be a positive integer"),
        (lambda d: d.update(version=True), r"version: expected int, got bool"),
        (lambda d: d.update(embedding_layout="fused"), r"embedding_layout: 'fused' is not one of prepack, tbe"),
        (lambda d: d.update(embedding_layout=1), r"plan.embedding_layout: expected str, got int"),
    ],
)
def test_bad_plans_name_the_field(edit, message):
    data = json.loads(plan().to_json())
    edit(data)
    with pytest.raises(PlanError, match=message):
        QuantPlan.from_dict(data)


def test_nan_ranges_and_bad_json_are_rejected():
    with pytest.raises(PlanError, match="activation.hi: must be finite"):
        plan(layers=(LayerPlan("a", "linear", "int8", activation=ActivationRange(0.0, math.nan, 0.1, 0)),))
    text = plan().to_json().replace("3.0000000000000004", "NaN")
    with pytest.raises(PlanError, match="must be finite"):
        QuantPlan.from_json(text)
    with pytest.raises(PlanError, match="plan is not valid JSON"):
        QuantPlan.from_json("{")
    with pytest.raises(KeyError, match="has no layer 'nope'"):
        plan().layer("nope")
