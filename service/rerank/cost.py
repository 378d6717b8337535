"""What inference costs on this machine, measured as it runs: seconds per padded token."""

from __future__ import annotations

import threading
from collections.abc import Sequence

# Weight of the newest batch in the running average: recent enough to follow a noisy neighbour
# arriving or leaving within a few batches, smooth enough that one slow batch does not halve a budget.
SMOOTHING = 0.2


class CostModel:
    """Seconds per token of a padded batch, a running average of the batches the engine ran.

    Attention makes long pairs cost a little more per token than short ones; a search budget only
    needs the right order of magnitude, and the average follows the lengths this server really sees.
    """

    def __init__(self, seconds_per_token: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._per_token = seconds_per_token

    @property
    def seconds_per_token(self) -> float:
        """0.0 until a batch has been measured."""
        return self._per_token

    def observe(self, tokens: int, seconds: float) -> None:
        """Record one ONNX run over `tokens` padded tokens (rows x width)."""
        if tokens <= 0 or seconds <= 0:
            return
        sample = seconds / tokens
        with self._lock:
            known = self._per_token
            self._per_token = sample if known == 0.0 else known + SMOOTHING * (sample - known)

    def seconds(self, tokens: int) -> float:
        return tokens * self._per_token


def affordable(lengths: Sequence[int], seconds: float, cost: CostModel) -> int:
    """How many of the pairs, taken in order, fit in `seconds` (all of them while nothing is measured)."""
    per_token = cost.seconds_per_token
    if per_token == 0.0:
        return len(lengths)
    spent = 0.0
    for count, length in enumerate(lengths):
        spent += length * per_token
        if spent > seconds:
            return count
    return len(lengths)
