"""The mixed-precision fallback search: a greedy climb over units' precision ladders.

The search is pure: it sees unit names, each unit's ladder and byte cost
(lpmon.pipeline.assembly.Unit), every unit's precision, and two callbacks;
it never runs the model. `score(precisions)` is a cheap, low-variance,
label-free estimate of a plan's dNE (the pipeline's: the KL gap of its
predictions from fp32's on the same examples), and `accept(precisions)` is
the lifecycle's validation on held-out labelled examples
(lpmon.pipeline.lifecycle). Each round measures every movable unit's
sensitivity (the score it removes when moved one rung up) and raises the
units that remove the most per byte until the predicted score reaches the
goal; then the plan is validated. It stops at the first plan that passes, or
says that none was shown to (the caller then takes whole-model fp32, or keeps
waiting for evidence). lpmon.pipeline.fallback runs it with the pipeline's
callbacks and saves its progress after every round.

Words: a *move* raises one unit one rung; a *round* is one pass of the
search, which makes one or more moves.

Plan assembly (Ranges, units, assemble, evaluate, ...) lives in lpmon.pipeline.assembly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from lpmon.pipeline.assembly import Unit
from lpmon.quant.precision import step_up

MAX_ROUNDS = 8    # rounds before the search validates what it has and stops
RELEVANT = 0.1    # a move matters if it removes at least this share of the best move's gain


@dataclass(frozen=True)
class Move:
    """One unit raised one rung (saved as is in the store's fallback progress)."""

    unit: str
    before: str
    after: str
    why: str = ""     # e.g. "alone removes 0.2100 of 0.2500 % (KL gap) for 65,536 bytes"


@dataclass
class SearchResult:
    precisions: dict[str, str]
    passed: bool = False
    reason: str = ""
    moves: list[Move] = field(default_factory=list)
    rounds: int = 0

    @property
    def moved(self) -> list[str]:
        return sorted({move.unit for move in self.moves})


class Verdict(Protocol):
    """What `accept` returns (lpmon.pipeline.lifecycle.Verdict): passed, why, and whether
    the candidate's own interval is above the gate (not merely too wide)."""

    passed: bool
    reason: str
    degraded: bool


Precisions = dict[str, str]


def fallback_search(start: Precisions, *, units: Mapping[str, Unit],
                    score: Callable[[Precisions], float], accept: Callable[[Precisions], Verdict],
                    target: float, frozen: frozenset[str] | set[str] = frozenset(),
                    max_rounds: int = MAX_ROUNDS, creep: bool = False,
                    on_step: Callable[[SearchResult], None] | None = None,
                    resume: tuple[Precisions, list[Move]] | None = None) -> SearchResult:
    """Raise units, most score removed per byte first, until a plan passes `accept`.

    start: every unit's precision to begin from; frozen: units never moved (pinned).
    target: the score a plan must be within to be validated (the caller's gate).
    Until then each round moves units one rung each until their summed gains reach
    the gap between the current score and half the target; when no single move
    helps, the round raises every movable unit to its top (whole-model fp32 but
    for the frozen units). A plan that fails validation ends the search unless
    its interval is above the gate (`degraded`) or `creep` is set: then the
    search aims lower and goes on. It also ends, with the last plan's verdict,
    when nothing can move or after `max_rounds` rounds.

    on_step(result) is called after every round, so a caller can save progress;
    resume=(precisions, moves) saved that way continues there.
    """
    if set(start) != set(units):
        raise ValueError(f"the start plan covers {sorted(start)}, the model's units are {sorted(units)}")
    precisions, moves = (dict(start), []) if resume is None else (dict(resume[0]), list(resume[1]))
    if set(precisions) != set(start):
        raise ValueError(f"cannot resume: the saved search covers {sorted(precisions)}, not {sorted(start)}")
    result = SearchResult(dict(precisions), moves=moves)
    worth, goal = target, target / 2  # validate once the estimate is within target; rounds aim for half
    while True:
        current = score(precisions)
        movable = {name: up for name, unit in units.items()
                   if name not in frozen and (up := step_up(precisions[name], unit.ladder)) is not None}
        if current <= worth or not movable or result.rounds >= max_rounds:
            verdict = accept(precisions)
            result.precisions, result.passed, result.reason = dict(precisions), verdict.passed, verdict.reason
            if verdict.passed or not movable or result.rounds >= max_rounds or not (verdict.degraded or creep):
                return result
            # The labels disagree with the estimate (or cannot confirm it): aim lower.
            worth = goal = min(goal, current) / 2
        result.rounds += 1
        for name, after, why in _round(precisions, movable, units, score, current, goal):
            result.moves.append(Move(name, precisions[name], after, why))
            precisions[name] = after
        result.precisions = dict(precisions)
        if on_step is not None:
            on_step(result)


def _round(precisions, movable, units, score, current, goal):
    """One round's moves: (unit, new precision, why). Every movable unit's gain is
    measured alone; units are then added best gain per byte first, re-scoring the
    plan after each, until it reaches the goal (gains are not additive: once the
    unit at fault is raised, the others' gains vanish)."""
    options = []
    for name, up in movable.items():
        gain = current - score(dict(precisions, **{name: up.value}))
        added = max(units[name].bytes(up) - units[name].bytes(precisions[name]), 1.0)
        options.append((gain / added, gain, added, name, up.value))
    best = max((o[1] for o in options), default=0.0)
    # Moves that matter (a tenth of the best one's gain at least), cheapest per gain first:
    # a tiny layer that removes next to nothing is not raised just because it is cheap.
    helpful = sorted((o for o in options if o[1] > 0 and o[1] >= RELEVANT * best), key=lambda o: (-o[0], o[3]))
    if not helpful:
        return [(name, units[name].ladder[-1].value, "no single move lowers the estimate: whole-model fp32")
                for name in movable]
    moves, trial = [], dict(precisions)
    for _, gain, added, name, up in helpful:
        trial[name] = up
        moves.append((name, up, f"alone removes {gain:.4f} of {current:.4f} % (KL gap) for {added:,.0f} bytes"))
        if score(trial) <= goal:
            break
    return moves
