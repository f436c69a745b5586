"""Plan assembly, units and costs (lpmon.pipeline.assembly), and the fallback search
on the synthetic world. The search's greedy logic alone, on made-up scores: test_search_greedy."""

import numpy as np
import pytest

from lpmon.demo.world import World, WorldConfig
from lpmon.pipeline.assembly import Ranges, Unit, assemble, evaluate, plan_bytes, units
from lpmon.pipeline.evidence import HeldOut
from lpmon.pipeline.lifecycle import validate
from lpmon.pipeline.search import fallback_search
from lpmon.quant.precision import Precision, bytes_served, step_up
from lpmon.traffic import TrafficSchema
from lpmon.traffic.sample import to_batch

GATE = 0.05


def world_day(scenario, day, n=100_000):
    world = World(WorldConfig(scenario, seed=1, examples_per_day=n))
    table = world.day_table(day)
    batch = to_batch(table, TrafficSchema.for_model(world.model.spec))
    return world.model, batch, table.column("label").to_numpy().astype(np.uint8)


# --- units, ladders, bytes -------------------------------------------------------------------


def test_ladders_start_wherever_a_unit_is():
    assert step_up("int2", Unit("t", "embedding", 10, 4).ladder) is Precision.INT4
    assert step_up("int8", Unit("t", "embedding", 10, 4).ladder) is Precision.FP16
    assert step_up("bf16", Unit("l", "linear", 10, 4).ladder) is Precision.FP32
    assert step_up("fp32", Unit("l", "linear", 10, 4).ladder) is None


def test_cost_is_bytes_served_so_big_tables_cost_more():
    assert bytes_served("embedding", 1_000_000, 64, "int8") == 1_000_000 * (64 + 8)
    assert bytes_served("embedding", 10, 64, "int4") == 10 * (32 + 4)
    assert bytes_served("embedding", 10, 5, "int2") == 10 * (2 + 4)
    assert bytes_served("linear", 64, 13, "fp16") == 64 * 13 * 2
    big, small = Unit("a", "embedding", 1_000_000, 16), Unit("b", "embedding", 10, 16)
    assert big.bytes("fp16") - big.bytes("int8") > 1000 * (small.bytes("fp16") - small.bytes("int8"))
    # The TBE layout (embedding_layout = "tbe"): fp16 scale and bias, rows padded to 16 bytes.
    assert Unit("a", "embedding", 1000, 64, "tbe").bytes("int8") == 1000 * 80
    assert Unit("a", "embedding", 1000, 16, "tbe").bytes("int8") == 1000 * 32  # 16 + 4 -> 32


# --- on the synthetic world --------------------------------------------------------------------


def test_all_fp32_assembly_is_the_reference_and_bytes_add_up():
    model, batch, labels = world_day("stable", 0, 5_000)
    ranges = Ranges.calibrate(model, batch)
    all_units = units(model)
    plan = assemble(model, ranges, {unit: "fp32" for unit in all_units})
    c = evaluate(model, plan, batch, labels)
    assert c.dne_pct == 0.0 and c.dne_pct_hi == 0.0  # whole-model fp32 always passes rule 1
    int8 = assemble(model, ranges, {unit: "int8" for unit in all_units}, model_id="w", version=3)
    assert int8.version == 3 and int8.layer("bot_l.0").activation is not None
    tbe = assemble(model, ranges, {unit: "int8" for unit in all_units}, embedding_layout="tbe")
    assert tbe.embedding_layout == "tbe" and int8.embedding_layout == "prepack"
    assert units(model, "tbe")["emb_l.0"].bytes("int8") == model.spec.tables[0].rows * 32  # 16 + 4 -> 32 B
    assert len(all_units) == 4 + 26
    assert plan_bytes(all_units, {u: "fp32" for u in all_units}) > 2.5 * plan_bytes(  # 16-wide rows: 64 B vs 24
        all_units, {u: "int8" for u in all_units}
    )


@pytest.mark.slow
def test_outliers_raise_a_few_fc_layers_and_no_table():
    model, batch, labels = world_day("outliers", 6, 60_000)
    calibration, evaluation = batch.slice(0, 30_000), batch.slice(30_000, 60_000)
    ranges = Ranges.calibrate(model, calibration)
    evidence = HeldOut(model, evaluation, labels[30_000:])
    plan_of = lambda p: assemble(model, ranges, p)  # noqa: E731
    _, day0, _ = world_day("outliers", 0, 20_000)  # the plan in force: calibrated before the outliers came
    active = assemble(model, Ranges.calibrate(model, day0), {u: "int8" for u in units(model)})
    result = fallback_search(
        {u: "int8" for u in units(model)},
        units=units(model),
        score=lambda p: evidence.kl_gap(plan_of(p)),
        accept=lambda p: validate(plan_of(p), evidence, GATE, active=active, active_over_gate=True),
        target=GATE,
    )
    assert result.passed, result.reason
    assert result.moved and not [u for u in result.moved if u.startswith("emb_l.")], result.moved
