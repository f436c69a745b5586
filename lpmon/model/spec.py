"""The architecture of a DLRM-style model, as stored in a snapshot's spec.json.

dense features -> bottom MLP; each sparse feature -> pooled embedding-bag
lookup; pairwise dot-product interaction (or concatenation); top MLP ->
sigmoid. Layer names follow facebookresearch/dlrm: emb_l.<t>, bot_l.<2i>,
top_l.<2i> (the odd indices are the ReLUs between them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

INTERACTIONS = ("dot", "cat")


class SpecError(ValueError):
    """A spec or weights file that does not describe a usable model; names the field."""


@dataclass(frozen=True)
class TableSpec:
    name: str          # the sparse feature it serves, e.g. "sparse_3"
    rows: int
    dim: int


@dataclass(frozen=True)
class ModelSpec:
    dense: tuple[str, ...]            # dense feature columns, in order
    tables: tuple[TableSpec, ...]
    bottom_mlp: tuple[int, ...]       # output sizes of the bottom layers
    top_mlp: tuple[int, ...]          # output sizes of the top layers; the last is 1
    interaction: str = "dot"
    pooling: str = "sum"

    def __post_init__(self):
        validate(self)

    @property
    def embedding_dim(self) -> int:
        return self.tables[0].dim if self.tables else self.bottom_mlp[-1]

    @property
    def sparse(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def interaction_width(self) -> int:
        """Width of the top MLP's input."""
        if self.interaction == "cat":
            return self.bottom_mlp[-1] + sum(t.dim for t in self.tables)
        vectors = 1 + len(self.tables)
        return self.bottom_mlp[-1] + vectors * (vectors - 1) // 2

    def linear_layers(self) -> list[tuple[str, int, int]]:
        """(name, in, out) of every fully-connected layer, bottom then top."""
        layers, width = [], len(self.dense)
        for i, out in enumerate(self.bottom_mlp):
            layers.append((f"bot_l.{2 * i}", width, out))
            width = out
        width = self.interaction_width()
        for i, out in enumerate(self.top_mlp):
            layers.append((f"top_l.{2 * i}", width, out))
            width = out
        return layers

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor a snapshot must hold, by its DLRM state-dict name."""
        shapes: dict[str, tuple[int, ...]] = {f"emb_l.{t}.weight": (table.rows, table.dim)
                                             for t, table in enumerate(self.tables)}
        for name, fan_in, fan_out in self.linear_layers():
            shapes[f"{name}.weight"] = (fan_out, fan_in)
            shapes[f"{name}.bias"] = (fan_out,)
        return shapes

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "spec.json") -> "ModelSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"{source}: not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected an object")
        known = {"dense", "tables", "bottom_mlp", "top_mlp", "interaction", "pooling"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"{source}: unknown field {unknown[0]!r}")
        missing = sorted({"dense", "tables", "bottom_mlp", "top_mlp"} - set(data))
        if missing:
            raise SpecError(f"{source}: missing field {missing[0]!r}")
        try:
            tables = tuple(TableSpec(**t) for t in data["tables"])
            return cls(dense=tuple(data["dense"]), tables=tables,
                       bottom_mlp=tuple(data["bottom_mlp"]), top_mlp=tuple(data["top_mlp"]),
                       interaction=data.get("interaction", "dot"),
                       pooling=data.get("pooling", "sum"))
        except TypeError as err:
            raise SpecError(f"{source}: {err}") from None

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec":
        path = Path(path)
        return cls.from_json(path.read_text(), source=str(path))


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
    if spec.pooling not in ("sum", "mean"):
        raise SpecError(f"pooling: must be 'sum' or 'mean', got {spec.pooling!r}")
    names = set()
    for t, table in enumerate(spec.tables):
        if not table.name.startswith("sparse_") or table.name in names:
            raise SpecError(f"tables[{t}].name: must be a unique sparse_* column, got {table.name!r}")
        names.add(table.name)
        positive_ints((table.rows, table.dim), f"tables[{t}] rows/dim")
        if spec.interaction == "dot" and table.dim != spec.bottom_mlp[-1]:
            raise SpecError(f"tables[{t}].dim: dot interaction needs every table's dim to equal "
                            f"the bottom MLP's output ({spec.bottom_mlp[-1]}), got {table.dim}")
