"""Looks within a day: a group-sequential schedule with alpha spending.

A day scores `sample_size` examples first; while its verdict is undecided it
scores more of the same day's traffic, in the sample's hash order, at a fixed
schedule of sizes n_k = sample_size * 2^k, the last one the day's cap
min(max_sample_size, rows of the day). The schedule is set before the first
look (the day's rows are known from pass 1), so the looks' information
fractions t_k = n_k / n_K are fixed too.

The single look's false-alarm budget of a day, alpha = 1 / (2
sequential_run_length_days) at a true dNE at the gate (lpmon.verdict.sequential),
is spent over the looks with the O'Brien-Fleming-type function of Lan and
DeMets, alpha(t) = 2 - 2 Phi(z_{alpha/2} / sqrt(t)): look k may use alpha_k =
alpha(t_k) - alpha(t_{k-1}), and is DEGRADED when the estimate is more than z_k
standard errors above the gate, z_k the one-sided normal quantile of alpha_k.
Early looks get little (only a large excess is DEGRADED on the first sample;
a smaller one is scored further first), the last look nearly all: a day scored
to its cap needs about what one look at that size needs (3.35 standard errors
for 3.29 at a run length of 1000 days), so looking early costs the whole day's
power little. By the
union bound the day's false-alarm probability over all its looks is at most
sum alpha_k = alpha, whatever the correlation of the looks and whenever the
day stops (stopping early for any reason only removes later looks): the budget
`sequential_run_length_days` means today, kept (conservatively) under repeated
looks. A day with one look (a small day, or max_sample_size = sample_size) has
z_0 = the single-look z, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

STOP_REASONS = ("decided", "cap", "traffic_exhausted")


def spent(alpha: float, t: float) -> float:
    """The O'Brien-Fleming-type alpha spending function of Lan and DeMets (erfc keeps
    the tiny shares of early looks exact)."""
    t = min(max(t, 0.0), 1.0)
    return 0.0 if t == 0 else math.erfc(NormalDist().inv_cdf(1 - alpha / 2) / math.sqrt(2 * t))


@dataclass(frozen=True)
class Looks:
    """A day's schedule of looks and the z each look must clear for DEGRADED."""

    sizes: tuple[int, ...]  # examples scored at each look, increasing
    alpha: float  # the day's one-sided false-alarm budget at the gate

    @classmethod
    def of(cls, first: int, cap: int, run_length_days: float) -> "Looks":
        """first = sample_size, cap = min(max_sample_size, the day's rows)."""
        if first < 1:
            raise ValueError(f"the first look needs examples, got {first}")
        cap = max(cap, 1)
        sizes, n = [], first
        while n < cap:
            sizes.append(n)
            n *= 2
        sizes.append(cap)
        return cls(tuple(sizes), 1 / (2 * run_length_days))

    @property
    def cap(self) -> int:
        return self.sizes[-1]

    def look_of(self, n: int) -> int:
        """The index of the look taken at n examples (the last look at or under n)."""
        return max(0, sum(1 for size in self.sizes if size <= n) - 1)

    def alpha_at(self, look: int) -> float:
        t = [size / self.cap for size in self.sizes]
        return spent(self.alpha, t[look]) - (spent(self.alpha, t[look - 1]) if look else 0.0)

    def z_needed(self, look: int) -> float:
        """The z look `look` must clear: the one-sided quantile of its share of alpha."""
        share = self.alpha_at(look)
        return math.inf if share <= 0 else -NormalDist().inv_cdf(share)
