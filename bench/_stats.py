"""Figures every bench prints: percentiles, rank agreement, and the machine's load beside them."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in 0..100."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (scores of distinct pairs hardly ever tie, so plain ranks do)."""
    rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def top_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Share of the k highest-scored items the two scorings have in common."""
    return len(set(np.argsort(-a)[:k].tolist()) & set(np.argsort(-b)[:k].tolist())) / k


def load() -> str:
    """The 1, 5 and 15-minute load averages, as `uptime` prints them: figures mean little without it."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"
