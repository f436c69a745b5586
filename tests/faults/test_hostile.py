"""Hostile configuration, plans, names and strings: each is refused with a
message naming the field, or made harmless (parameterised SQL, paths kept
under the configured roots, markup escaped). See also tests/faults/test_fuzz.py
(traffic), test_alerts.py and test_ui_plugin.py (escaping in mails and pages).
"""

import copy
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lpmon.config import LIMITS, ConfigError, confined, load
from lpmon.pipeline.daywork import DayWork
from lpmon.quant import ActivationRange, LayerPlan, PlanError, Provenance, QuantPlan
from lpmon.store import Database, StateStore

pytestmark = pytest.mark.faults

HOSTILE_IDS = [
    "../etc",
    "a/b",
    "/abs",
    "..",
    ".",
    "x'; DROP TABLE runs; --",
    "<script>alert(1)</script>",
    "a b",
    "a\x00b",
    "é",
    "x" * 200,
    "-leading-dash",
    "a\nb",
    "%2e%2e",
]
FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lpmon.toml"
    path.write_text(text)
    return path


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes, without surrogate pairs, and DEL escaped too)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("gate_pct", "nan", "gate_pct: must be a percentage"),
        ("gate_pct", "inf", "gate_pct: must be a percentage"),
        ("gate_pct", "-0.5", "gate_pct: must be a percentage"),
        ("gate_pct", '"0.05"', "gate_pct: expected a number"),
        ("level", "nan", "level: must be between 0 and 1"),
        ("sample_size", "9223372036854775807", "sample_size: must be between 100 and"),
        ("sample_size", "-1", "sample_size: must be between 100 and"),
        ("sample_size", "1.5", "sample_size: expected an integer"),
        ("sample_size", "true", "sample_size: expected int"),
        ("calibration_days", "100000", "calibration_days: must be between 1 and"),
        ("validation_max_examples", "0", "validation_max_examples: must be between 1 and"),
        ("validation_days", "-1", "validation_days: must be between 0 and 90"),
        ("fallback_ladder", '["int8", "fp16"]', "fallback_ladder: unknown key"),
        ("recipients", '["a@example.com\\r\\nBcc: all@example.com"]', "recipients: not email addresses"),
        ("recipients", '["Team <a@example.com>"]', "recipients: not email addresses"),
        ("recipients", '"a@example.com"', "recipients: expected a list of strings"),
        ("traffic", '"/data/\\u0000x"', "traffic: control characters"),
        ("calibration_method", '"l3"', "calibration_method: must be one of"),
        ("colour", '"red"', "colour: unknown key"),
    ],
)
def test_hostile_settings_are_refused_naming_the_key(tmp_path, key, value, message):
    text = (
        f'[models.m]\ntraffic = "t"\nsnapshot = "s"\n{key} = {value}\n'
        if key != "traffic"
        else f'[models.m]\nsnapshot = "s"\ntraffic = {value}\n'
    )
    with pytest.raises(ConfigError) as error:
        load(config_file(tmp_path, text), environ={})
    assert f"models.m.{message}" in str(error.value)


def test_hostile_environment_and_store_values_are_refused(tmp_path):
    path = config_file(tmp_path, 'store = "not a url://"\n[models.m]\ntraffic = "t"\nsnapshot = "s"\n')
    with pytest.raises(ConfigError, match="store: not a url:// is not a database URL"):
        load(path, environ={})
    path = config_file(tmp_path, '[models.m]\ntraffic = "t"\nsnapshot = "s"\n')
    with pytest.raises(ConfigError, match="LPMON_SAMPLE_SIZE.sample_size: must be between 100 and"):
        load(path, environ={"LPMON_SAMPLE_SIZE": str(LIMITS["sample_size"] + 1)})
    with pytest.raises(ConfigError, match="LPMON_GATE_PCT.gate_pct: must be a percentage"):
        load(path, environ={"LPMON_GATE_PCT": "nan"})


@pytest.mark.parametrize("model_id", HOSTILE_IDS)
def test_hostile_model_ids_are_refused(tmp_path, model_id):
    with pytest.raises(ConfigError, match="a model id is letters, digits"):
        load(config_file(tmp_path, f'[models.{toml_string(model_id)}]\ntraffic = "t"\nsnapshot = "s"\n'), environ={})


TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)  # TOML strings hold no surrogates
TOML_VALUE = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats().map(
        lambda f: "nan" if math.isnan(f) else ("inf" if f == math.inf else "-inf" if f == -math.inf else repr(f))
    ),
    st.booleans().map(lambda b: str(b).lower()),
    TEXT.map(toml_string),
    st.lists(TEXT.map(toml_string), max_size=3).map(lambda v: f"[{', '.join(v)}]"),
)
KEYS = st.sampled_from(
    [
        "gate_pct",
        "level",
        "sample_size",
        "sample_seed",
        "min_examples",
        "min_positives",
        "calibration_method",
        "calibration_days",
        "embedding_precision",
        "embedding_layout",
        "cooldown_days",
        "healthy_days_to_reenable",
        "recipients",
        "traffic",
        "snapshot",
        "unknown_key",
    ]
)


@FUZZ
@given(entries=st.dictionaries(KEYS, TOML_VALUE, max_size=5))
def test_random_settings_load_or_are_refused_naming_the_key(tmp_path_factory, entries):
    lines = ['traffic = "t"', 'snapshot = "s"'] + [f"{k} = {v}" for k, v in entries.items()]
    kept = {}
    for line in lines:  # a later key replaces an earlier one (TOML refuses duplicates)
        kept[line.split(" = ")[0]] = line
    path = config_file(tmp_path_factory.mktemp("config"), "[models.m]\n" + "\n".join(kept.values()) + "\n")
    try:
        config = load(path, environ={})
    except ConfigError as err:
        named = re.findall(r"models\.m\.(\w+):", str(err))
        assert named and set(named) <= set(entries) | {"traffic", "snapshot"}, str(err)
        return
    settings_ = config.model("m")
    assert 0 < settings_.gate_pct <= 100 and 0 < settings_.level < 1
    assert 1 <= settings_.sample_size <= LIMITS["sample_size"]


# --- plans --------------------------------------------------------------------------------


def valid_plan_dict() -> dict:
    plan = QuantPlan(
        "ctr",
        2,
        (
            LayerPlan("bot_l.0", "linear", "int8", activation=ActivationRange(-0.1, 3.0, 0.0121, 8)),
            LayerPlan("emb_l.0", "embedding", "int4", search=True),
            LayerPlan("top_l.1", "linear", "fp16"),
        ),
        Provenance("l2", "2026-11-27", "2026-11-28"),
        embedding_layout="tbe",  # written only when not the default: here, so it is mutated too
    )
    return json.loads(plan.to_json())


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def paths_of(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths_of(value, prefix + (key,))


@FUZZ
@given(st.data())
def test_mutated_plans_are_refused_naming_the_field(data):
    plan = valid_plan_dict()
    where = data.draw(st.sampled_from([p for p in paths_of(plan) if p]))
    mutated = copy.deepcopy(plan)
    target = mutated
    for key in where[:-1]:
        target = target[key]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        target[where[-1]] = data.draw(JSON_VALUE)
    elif action == "delete":
        del target[where[-1]]
    else:
        target[data.draw(st.text(min_size=1, max_size=6))] = data.draw(JSON_VALUE)
    text = json.dumps(mutated)  # NaN and Infinity written as JSON's non-standard literals
    try:
        parsed = QuantPlan.from_json(text)
    except PlanError as err:
        assert re.match(r"^[\w.:-]+", str(err)), err  # starts with the field's path (or "plan")
        return
    again = QuantPlan.from_json(parsed.to_json())  # accepted: then valid, finite, and it round-trips
    assert again == parsed
    for layer in parsed.layers:
        if layer.activation:
            assert math.isfinite(layer.activation.scale) and layer.activation.scale > 0


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d["layers"]["bot_l.0"]["activation"].update(lo=float("nan")), "layers.bot_l.0.activation.lo"),
        (lambda d: d["layers"]["bot_l.0"]["activation"].update(scale=-0.5), "layers.bot_l.0.activation.scale"),
        (
            lambda d: d["layers"]["bot_l.0"]["activation"].update(zero_point=10**30),
            "layers.bot_l.0.activation.zero_point",
        ),
        (lambda d: d["layers"]["bot_l.0"]["activation"].update(bits=10**9), "layers.bot_l.0.activation.bits"),
        (lambda d: d.update(version=10**40), None),
        (lambda d: d.update(version=-3), "version"),
        (lambda d: d["layers"]["top_l.1"].update(precision="fp8"), "layers.top_l.1.precision"),
    ],
)
def test_nan_negative_and_huge_plan_values_are_refused(edit, field):
    plan = valid_plan_dict()
    edit(plan)
    if field is None:  # a huge but valid version number is fine: it is only a number
        assert QuantPlan.from_json(json.dumps(plan)).version == 10**40
        return
    with pytest.raises(PlanError, match=re.escape(field)):
        QuantPlan.from_json(json.dumps(plan))


# --- names in SQL and paths ---------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_IDS + ["'", '"', "\\", "%", "_", ";", "--", "/*", "$1", ":m"])
def test_sql_metacharacters_are_data(database_url, text):
    """Every statement is parameterised: hostile strings round-trip exactly and
    touch nothing else (the store does not rely on the config's id check)."""
    db = Database(database_url, create=True)
    db.migrate()
    store = StateStore(db)
    model_id = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL at all
    store.register_model(model_id, {"note": text})
    store.register_model("bystander")
    store.record_run(model_id, "2026-11-01", "HEALTHY", message=text.replace("\x00", ""))
    store.record_decision(model_id, "2026-11-01", "RECORD", [text])
    version = store.add_plan(model_id, valid_plan_dict_json(), "2026-11-01", reason=text.replace("\x00", ""))
    assert store.promote(model_id, version, expected_active=None)
    assert set(store.models()) == {model_id, "bystander"}
    assert store.rows("runs", model_id)[0]["message"] == text.replace("\x00", "")
    assert json.loads(store.rows("decisions", model_id)[0]["reasons_json"]) == [text]
    assert store.rows("runs", "bystander") == [] and store.active_plan("bystander") is None
    with pytest.raises(ValueError, match="unknown table"):
        store.rows("runs; DROP TABLE runs", model_id)
    db.engine.dispose()


def valid_plan_dict_json() -> str:
    return json.dumps(valid_plan_dict())


@pytest.mark.parametrize("parts", [("..", "x"), ("a", "../../x"), ("/etc",), ("a/../..",), ("",), ("a\x00",)])
def test_paths_stay_under_their_root(tmp_path, parts):
    with pytest.raises(ConfigError, match="not a name under"):
        confined(tmp_path, *parts)
    with pytest.raises(ConfigError, match="not a name under"):
        DayWork("m", "2026-11-01").folder(tmp_path, *(parts + ("2026-11-01",))[:2])
    assert confined(tmp_path, "m", "2026-11-01") == tmp_path.resolve() / "m" / "2026-11-01"


def test_the_cli_refuses_a_hostile_model_without_touching_anything(tmp_path, capsys):
    from lpmon.cli import main
    from lpmon.store import init_store

    path = config_file(
        tmp_path, f'store = "sqlite:///{tmp_path / "s.db"}"\n[models.m]\ntraffic = "t"\nsnapshot = "s"\n'
    )
    init_store(f"sqlite:///{tmp_path / 's.db'}")
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    assert main(["run", "--config", str(path), "--model", "../../escape", "--date", "2026-11-01"]) != 0
    assert "no model '../../escape'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
