"""The architecture of a DLRM-style model, as stored in a snapshot's spec.json.

dense features -> bottom MLP; each sparse feature -> pooled embedding-bag
lookup in its table; pairwise dot-product interaction (or concatenation,
optionally followed by DCNv2 low-rank cross layers); top MLP -> sigmoid.
Layer names follow facebookresearch/dlrm: emb_l.<t>, bot_l.<2i>, top_l.<2i>
(the odd indices are the ReLUs between them); a cross layer l is two FC units,
cross_l.<l>.V ([rank, width], no bias) and cross_l.<l>.W ([width, rank], with
the layer's bias): x_{l+1} = x_0 * (W (V x_l) + b) + x_l (TorchRec's LowRankCrossNet).

A table serves one feature, named after it (facebookresearch/dlrm), or the
features it lists (TorchRec: a table shared by several features); the
model's sparse inputs are the features, table by table, in that order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: Traffic columns that are never features.
RESERVED = ("request_id", "label", "ts", "model_id")
INTERACTIONS = ("dot", "cat")
POOLINGS = ("sum", "mean")
#: The order of the dot interaction's pairs over the vectors [bottom, feature 0, ...]:
#: "lower" is facebookresearch/dlrm's (i > j, np.tril_indices(V, k=-1)), "upper" TorchRec's
#: InteractionArch (i < j, torch.triu_indices(V, V, offset=1)).
PAIR_ORDERS = ("lower", "upper")


class SpecError(ValueError):
    """A spec or weights file that does not describe a usable model; names the field."""


@dataclass(frozen=True)
class TableSpec:
    name: str  # the sparse feature it serves, e.g. "sparse_3"; or, with features, the table's own name
    rows: int
    dim: int
    features: tuple[str, ...] = ()  # the features it serves, when not just `name`
    pooling: str = ""  # sum or mean; "" is the model's pooling

    @property
    def inputs(self) -> tuple[str, ...]:
        """The traffic columns (features) this table serves."""
        return self.features or (self.name,)


@dataclass(frozen=True)
class ModelSpec:
    dense: tuple[str, ...]  # dense feature columns, in order
    tables: tuple[TableSpec, ...]
    bottom_mlp: tuple[int, ...]  # output sizes of the bottom layers
    top_mlp: tuple[int, ...]  # output sizes of the top layers; the last is 1
    interaction: str = "dot"
    pooling: str = "sum"
    pair_order: str = "lower"
    cross_layers: int = 0  # DCNv2 low-rank cross layers between the interaction and the top MLP
    cross_rank: int = 0

    def __post_init__(self):
        validate(self)

    @property
    def embedding_dim(self) -> int:
        return self.tables[0].dim if self.tables else self.bottom_mlp[-1]

    @property
    def sparse(self) -> tuple[str, ...]:
        """The sparse features (traffic columns), table by table: a batch's sparse inputs."""
        return tuple(feature for table in self.tables for feature in table.inputs)

    def feature_tables(self) -> tuple[int, ...]:
        """The table of each sparse feature (spec.sparse's order)."""
        return tuple(t for t, table in enumerate(self.tables) for _ in table.inputs)

    def table_pooling(self, t: int) -> str:
        return self.tables[t].pooling or self.pooling

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(i, j) of the dot interaction's pairs over the vectors [bottom, feature 0, ...], in order."""
        vectors = 1 + len(self.sparse)
        if self.pair_order == "upper":
            return np.triu_indices(vectors, k=1)
        return np.tril_indices(vectors, k=-1)

    def interaction_width(self) -> int:
        """Width of the interaction's output (the cross layers' and then the top MLP's input)."""
        if self.interaction == "cat":
            return self.bottom_mlp[-1] + sum(self.tables[t].dim for t in self.feature_tables())
        vectors = 1 + len(self.sparse)
        return self.bottom_mlp[-1] + vectors * (vectors - 1) // 2

    def cross_units(self) -> list[tuple[str, str]]:
        """(V, W) unit names of each cross layer."""
        return [(f"cross_l.{layer}.V", f"cross_l.{layer}.W") for layer in range(self.cross_layers)]

    def linear_layers(self) -> list[tuple[str, int, int]]:
        """(name, in, out) of every fully-connected unit: bottom, cross (V then W), top."""
        layers, width = [], len(self.dense)
        for i, out in enumerate(self.bottom_mlp):
            layers.append((f"bot_l.{2 * i}", width, out))
            width = out
        width = self.interaction_width()
        for v, w in self.cross_units():
            layers += [(v, width, self.cross_rank), (w, self.cross_rank, width)]
        for i, out in enumerate(self.top_mlp):
            layers.append((f"top_l.{2 * i}", width, out))
            width = out
        return layers

    def relu_after(self, name: str) -> bool:
        """A ReLU follows every bottom and top layer but the last (the logit); none follows a cross unit."""
        return name.startswith(("bot_l.", "top_l.")) and name != f"top_l.{2 * (len(self.top_mlp) - 1)}"

    def has_bias(self, name: str) -> bool:
        """Every FC unit has a bias but a cross layer's V."""
        return not name.endswith(".V")

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor a snapshot must hold, by its DLRM state-dict name."""
        shapes: dict[str, tuple[int, ...]] = {
            f"emb_l.{t}.weight": (table.rows, table.dim) for t, table in enumerate(self.tables)
        }
        for name, fan_in, fan_out in self.linear_layers():
            shapes[f"{name}.weight"] = (fan_out, fan_in)
            if self.has_bias(name):
                shapes[f"{name}.bias"] = (fan_out,)
        return shapes

    def to_json(self) -> str:
        """The spec as JSON; fields at their defaults that older specs lack are left out,
        so a model without them writes the spec.json it always did."""
        data = asdict(self)
        for table in data["tables"]:
            for key in ("features", "pooling"):
                if not table[key]:
                    del table[key]
        for key, default in _OPTIONAL.items():
            if data[key] == default:
                del data[key]
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "spec.json") -> "ModelSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"{source}: not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected an object")
        known = {"dense", "tables", "bottom_mlp", "top_mlp", "interaction", "pooling", *_OPTIONAL}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{source}: unknown field {unknown[0]!r}")
        missing = sorted({"dense", "tables", "bottom_mlp", "top_mlp"} - set(data))
        if missing:
            raise SpecError(f"{source}: missing field {missing[0]!r}")
        try:
            tables = tuple(TableSpec(**{**t, "features": tuple(t.get("features", ()))}) for t in data["tables"])
            return cls(
                dense=tuple(data["dense"]),
                tables=tables,
                bottom_mlp=tuple(data["bottom_mlp"]),
                top_mlp=tuple(data["top_mlp"]),
                interaction=data.get("interaction", "dot"),
                pooling=data.get("pooling", "sum"),
                **{key: data.get(key, default) for key, default in _OPTIONAL.items()},
            )
        except TypeError as err:
            raise SpecError(f"{source}: {err}") from None

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec":
        path = Path(path)
        return cls.from_json(path.read_text(), source=str(path))


#: Fields added after the first spec.json format, with their defaults.
_OPTIONAL = {"pair_order": "lower", "cross_layers": 0, "cross_rank": 0}


def validate(spec: ModelSpec) -> None:
    def positive_ints(values, field):
        if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
            raise SpecError(f"{field}: must be a non-empty list of positive integers, got {list(values)}")

    if not spec.dense or any(not isinstance(c, str) or not c.startswith("dense_") for c in spec.dense):
        raise SpecError(f"dense: must list dense_* column names, got {list(spec.dense)}")
    positive_ints(spec.bottom_mlp, "bottom_mlp")
    positive_ints(spec.top_mlp, "top_mlp")
    if spec.top_mlp[-1] != 1:
        raise SpecError(f"top_mlp: the last layer must have 1 output (the logit), got {spec.top_mlp[-1]}")
    if spec.interaction not in INTERACTIONS:
        raise SpecError(f"interaction: must be one of {INTERACTIONS}, got {spec.interaction!r}")
    if spec.pooling not in POOLINGS:
        raise SpecError(f"pooling: must be 'sum' or 'mean', got {spec.pooling!r}")
    if spec.pair_order not in PAIR_ORDERS:
        raise SpecError(f"pair_order: must be one of {PAIR_ORDERS}, got {spec.pair_order!r}")
    if spec.cross_layers:
        positive_ints((spec.cross_layers, spec.cross_rank), "cross_layers/cross_rank")
        if spec.interaction != "cat":
            raise SpecError(f"cross_layers: cross layers take the cat interaction, not {spec.interaction!r}")
    elif spec.cross_rank:
        raise SpecError(f"cross_rank: {spec.cross_rank} without cross layers")
    columns = set(spec.dense)
    for t, table in enumerate(spec.tables):
        if not isinstance(table.name, str) or not table.name:
            raise SpecError(f"tables[{t}].name: must be a non-empty string, got {table.name!r}")
        if any(s.name == table.name for s in spec.tables[:t]):
            raise SpecError(f"tables[{t}].name: {table.name!r} names two tables")
        for feature in table.inputs:
            if not isinstance(feature, str) or not feature or feature in columns or feature in RESERVED:
                raise SpecError(
                    f"tables[{t}]: feature {feature!r} must be a column name of its own "
                    f"(not a dense column, another feature, or one of {', '.join(RESERVED)})"
                )
            columns.add(feature)
        positive_ints((table.rows, table.dim), f"tables[{t}] rows/dim")
        if table.pooling and table.pooling not in POOLINGS:
            raise SpecError(f"tables[{t}].pooling: must be 'sum' or 'mean', got {table.pooling!r}")
        if spec.interaction == "dot" and table.dim != spec.bottom_mlp[-1]:
            raise SpecError(
                f"tables[{t}].dim: dot interaction needs every table's dim to equal "
                f"the bottom MLP's output ({spec.bottom_mlp[-1]}), got {table.dim}"
            )
