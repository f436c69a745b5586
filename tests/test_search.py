"""Plan assembly and the fallback search on the synthetic world."""

import numpy as np
import pytest

from lpmon.model import forward_fp32
from lpmon.search import EMBEDDINGS, Ranges, assemble, cost, evaluate, fallback_search
from lpmon.traffic import TrafficSchema
from lpmon.traffic.sample import to_batch
from lpmon.world import World, WorldConfig

GATE = 0.05


def world_day(scenario, day, n=100_000):
    world = World(WorldConfig(scenario, seed=1, examples_per_day=n))
    table = world.day_table(day)
    batch = to_batch(table, TrafficSchema.for_model(world.model.spec))
    return world.model, batch, table.column("label").to_numpy().astype(np.uint8)


def all_int8(model):
    units = {name: "int8" for name, _, _ in model.spec.linear_layers()}
    return dict(units, **{EMBEDDINGS: "int8"})


def test_all_fp32_assembly_is_the_reference():
    model, batch, labels = world_day("stable", 0, 5_000)
    ranges = Ranges.calibrate(model, batch)
    fp32 = {unit: "fp32" for unit in all_int8(model)}
    plan = assemble(model, ranges, fp32)
    assert evaluate(model, plan, batch, labels).dne_pct == 0.0
    int8 = assemble(model, ranges, all_int8(model), model_id="w", version=3)
    assert int8.version == 3 and int8.layer("bot_l.0").activation is not None
    assert cost(all_int8(model), {"int8": 1.0}) == len(all_int8(model))


@pytest.mark.slow
def test_stable_needs_no_fallback():
    model, batch, labels = world_day("stable", 3)
    calibration, evaluation = batch.slice(0, 50_000), batch.slice(50_000, 100_000)
    result = fallback_search(model, Ranges.calibrate(model, calibration), evaluation, labels[50_000:],
                             gate_pct=GATE, start=all_int8(model))
    assert result.steps == [] and result.comparison.dne_pct <= GATE


@pytest.mark.slow
def test_outliers_fall_back_few_layers_and_hold_the_gate():
    model, batch, labels = world_day("outliers", 6)
    calibration, evaluation = batch.slice(0, 50_000), batch.slice(50_000, 100_000)
    progress = []
    result = fallback_search(model, Ranges.calibrate(model, calibration), evaluation, labels[50_000:],
                             gate_pct=GATE, start=all_int8(model), on_step=lambda r: progress.append(len(r.steps)))
    assert result.comparison.dne_pct <= GATE
    assert 1 <= len(result.moved) <= 3 and EMBEDDINGS not in result.moved  # not most of the layers
    assert progress == list(range(1, len(result.steps) + 1))  # progress reported at every move
    assert all(result.precisions[u] in ("fp16", "fp32") for u in result.moved)
    # Moves are listed in order with the dNE after each.
    assert [s.dne_pct for s in result.steps][-1] == result.comparison.dne_pct


@pytest.mark.slow
def test_an_interrupted_search_resumes_where_it_stopped():
    model, batch, labels = world_day("outliers", 6, 16_000)
    calibration, evaluation = batch.slice(0, 8_000), batch.slice(8_000, 16_000)
    ranges = Ranges.calibrate(model, calibration)
    args = dict(gate_pct=-0.2, start=all_int8(model))  # unreachable: the search goes several moves
    whole = fallback_search(model, ranges, evaluation, labels[8_000:], **args)
    assert len(whole.steps) >= 2, whole.steps
    saved = []

    def crash_after_first(progress):
        saved.append((dict(progress.precisions), list(progress.steps)))
        raise KeyboardInterrupt  # the worker dies after saving its first move

    with pytest.raises(KeyboardInterrupt):
        fallback_search(model, ranges, evaluation, labels[8_000:], on_step=crash_after_first, **args)
    seen = []
    resumed = fallback_search(model, ranges, evaluation, labels[8_000:], resume=saved[-1],
                              on_step=lambda r: seen.append(len(r.steps)), **args)
    assert resumed.precisions == whole.precisions and resumed.steps == whole.steps
    assert seen == list(range(2, len(whole.steps) + 1))  # the first move was not searched again
    with pytest.raises(ValueError, match="cannot resume"):
        fallback_search(model, ranges, evaluation, labels[8_000:], resume=({"x": "int8"}, []), **args)
