"""Paired comparisons over seeds: the mean difference of two methods run on the same seeds, its
standard error, a 95 % t-interval and a sign count (docs/algorithm.md, "How a win is told
from noise"). Used by ``samix-hub demo`` and ``benchmarks/transfer.py``."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["t_quantile", "paired", "verdict"]


def t_quantile(df: int, p: float = 0.975) -> float:
    """Student t quantile (scipy, a dependency of scikit-learn)."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def paired(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, Any]:
    """Mean paired difference ``ours - theirs`` with its standard error, 95 % interval, signs."""
    if len(ours) != len(theirs) or len(ours) < 2:
        raise ValueError("paired needs two equally long lists of at least 2 seeds")
    d = [a - b for a, b in zip(ours, theirs, strict=True)]
    n = len(d)
    mean = statistics.mean(d)
    se = statistics.stdev(d) / math.sqrt(n)
    half = t_quantile(n - 1) * se
    return {
        "mean": mean,
        "se": se,
        "ci95": [mean - half, mean + half],
        "ahead": sum(x > 0 for x in d),
        "tied": sum(x == 0 for x in d),
        "n": n,
    }


def verdict(difference: dict[str, Any]) -> str:
    """ "ahead of" / "behind" only when the 95 % interval of a :func:`paired` difference
    excludes 0; otherwise "level with" (the seeds cannot tell the two apart)."""
    lo, hi = difference["ci95"]
    return "ahead of" if lo > 0 else "behind" if hi < 0 else "level with"
