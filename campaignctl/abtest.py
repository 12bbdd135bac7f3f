"""The A/B winner: a two-proportion z-test on each variant's figures, as a pure function.

The engine gathers the figures (sends and successes per variant, from the database) and stores
what `pick_winner` returns; `status` shows it. The normal distribution is the stdlib's
`statistics.NormalDist`: no scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

#: How a decision was made (the stored `rule`).
SIGNIFICANT = "significant"  # the best beat the runner-up at the confidence asked
NOT_SIGNIFICANT = "not_significant"  # p-value at or above 1 - confidence: the fallback
TOO_FEW = "too_few_sends"  # a variant had fewer than min_per_variant sends: the fallback
# click_rate before clicks were tracked: decisions stored by an older campaignctl say it
NOT_TRACKED = "not_tracked"


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant's figures in the test group: sends, and successes by the metric."""

    name: str
    sends: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.sends if self.sends else 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision: the winner, the rule that decided it (words in `reason`), and the test's
    z and two-sided p-value (None when no test was run)."""

    winner: str
    rule: str
    reason: str
    z: float | None
    p_value: float | None


def two_proportion(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p-value) of the pooled two-proportion z-test of s1/n1 against s2/n2.

    pooled p = (s1 + s2) / (n1 + n2), se = sqrt(p (1 - p) (1/n1 + 1/n2)), z = (s1/n1 - s2/n2)
    / se, p-value = 2 (1 - Phi(|z|)). No spread at all (both rates 0, or both 1): z 0, p 1.
    """
    if n1 <= 0 or n2 <= 0:
        return 0.0, 1.0
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (s1 / n1 - s2 / n2) / se
    return z, 2 * (1 - NormalDist().cdf(abs(z)))


def pick_winner(
    arms: Sequence[Arm], confidence: float, min_per_variant: int, fallback: str, metric: str = ""
) -> Outcome:
    """The winner among `arms` (every variant that could be sent, in the file's order).

    The best rate is tested against the runner-up (the closest rival: if the best beats it,
    it is ahead of the others as well); it wins when p < 1 - confidence and every variant has
    `min_per_variant` sends. Otherwise, and for a tie, `fallback` does.
    """
    alpha = 1 - confidence
    if len(arms) < 2:
        return Outcome(fallback, TOO_FEW, "fewer than two variants were sent", None, None)
    ranked = sorted(arms, key=lambda a: -a.rate)  # stable: a tie keeps the file's order
    best, runner_up = ranked[0], ranked[1]
    z, p = two_proportion(best.successes, best.sends, runner_up.successes, runner_up.sends)
    short = [a for a in arms if a.sends < min_per_variant]
    if short:
        names = ", ".join(f"{a.name} ({a.sends})" for a in short)
        why = f"fewer than {min_per_variant} sends for {names}"
        return Outcome(fallback, TOO_FEW, why, z, p)
    if p < alpha:
        why = f"{best.name} beat {runner_up.name}: p = {p:.4g} < {alpha:.3g}"
        return Outcome(best.name, SIGNIFICANT, why, z, p)
    why = f"no significant difference: p = {p:.4g} >= {alpha:.3g}"
    return Outcome(fallback, NOT_SIGNIFICANT, why, z, p)
