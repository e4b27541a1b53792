"""The statistics of the tables and figures: mean ± sample std over folds, 95% intervals, readings.

* **Over folds** (paper Sect. 5: "mean value and standard deviation of Dice score across
  folds"): the mean and the *sample* standard deviation (``ddof=1``) of the finite values, one
  per fold; NaN values are left out. With one value the standard deviation is undefined.
* **95% interval of a mean over folds** (the figures' error bars): ``m ± t(0.975, n-1) · s / √n``,
  Student's t with ``n - 1`` degrees of freedom over the ``n`` per-fold values (mean ``m``,
  sample std ``s``); none for ``n < 2``.
* **Paired difference to from scratch**: per fold, the setup's mean Dice over labels minus that
  of from scratch on the same network and the same validation cases (a fold trained several
  times, ``--repeats``, counts as its mean over runs on both sides, so each fold is one pair);
  then over the ``n`` folds both have the mean ``d``, the sample std ``s`` and the 95% interval
  ``d ± t(0.975, n-1) · s / √n``. Folds are the paired unit, so the interval holds the
  fold-to-fold spread (and, averaged in, the run-to-run spread); it is wide with few folds
  (``t(0.975, 2) = 4.30`` for 3 folds), which is what 3 folds can say.
* **Reading** of a paired interval: ``ahead`` when it lies above 0, ``behind`` when it lies below
  0, ``level`` whenever it holds 0 (its ends included); ``n/a`` with fewer than two folds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

CONFIDENCE = 0.95

AHEAD, LEVEL, BEHIND = "ahead", "level", "behind"
NO_READING = "n/a"


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (``ddof=1``) of ``n`` finite values; ``std`` is None
    when ``n < 2`` and ``mean`` is NaN when ``n == 0``."""

    mean: float
    std: float | None
    n: int

    def percent(self) -> str:
        if self.n == 0:
            return "n/a"
        std = "n/a" if self.std is None else f"{100 * self.std:.1f}"
        return f"{100 * self.mean:.1f} ± {std}"

    def interval(self) -> tuple[float, float] | None:
        """The 95% Student-t interval of the mean (None for ``n < 2``)."""
        if self.std is None:
            return None
        half = float(student_t.ppf(0.5 + CONFIDENCE / 2, self.n - 1)) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def half_width(self) -> float | None:
        """Half the width of :meth:`interval` (None for ``n < 2``)."""
        interval = self.interval()
        return None if interval is None else (interval[1] - interval[0]) / 2


def mean_std(values: Sequence[float]) -> MeanStd:
    """Mean and sample std (``ddof=1``) of the finite entries of ``values``."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return MeanStd(math.nan, None, 0)
    std = float(np.std(finite, ddof=1)) if finite.size > 1 else None
    return MeanStd(float(np.mean(finite)), std, int(finite.size))


def reading(interval: tuple[float, float] | None) -> str:
    """``ahead`` / ``level`` / ``behind`` for a paired interval (``level`` when it holds 0)."""
    if interval is None:
        return NO_READING
    low, high = interval
    if low > 0:
        return AHEAD
    if high < 0:
        return BEHIND
    return LEVEL


def percent_interval(interval: tuple[float, float] | None, signed: bool = True) -> str:
    """``[-12.3, +4.5]`` in percentage points (``n/a`` without interval)."""
    if interval is None:
        return "n/a"
    form = "+.1f" if signed else ".1f"
    return f"[{100 * interval[0]:{form}}, {100 * interval[1]:{form}}]"
