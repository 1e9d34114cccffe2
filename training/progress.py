"""The progress lines of the trainers: loss terms averaged over the steps since the last line, and the
throughput and time left of that window."""

from __future__ import annotations

import time


class LossWindow:
    """Sums each loss term and the examples seen until ``report`` turns them into means and examples/s."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps, self.examples, self.started = 0, 0, time.perf_counter()

    def add(self, terms: dict[str, float], examples: int) -> None:
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps, self.examples = self.steps + 1, self.examples + examples

    def report(self) -> tuple[dict[str, float], float]:
        """-> (mean of each term over the window, examples per second); starts the next window."""
        means = {key: value / max(self.steps, 1) for key, value in self.sums.items()}
        rate = self.examples / max(time.perf_counter() - self.started, 1e-9)
        self._reset()
        return means, rate


def seconds_left(budget_s: float, elapsed_s: float, steps_left: int, batch: int, rate: float) -> float:
    """Until the wall-time or the step budget runs out, whichever comes first, at ``rate`` examples/s."""
    return max(min(budget_s - elapsed_s, steps_left * batch / max(rate, 1e-9)), 0.0)
