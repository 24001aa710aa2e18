"""Progress through a speed stage, run by run.

A speed stage can take minutes: each batch size owns a slice of [0, 1] that fills as its runs
(warm-up and timed) finish, so the bar moves instead of sitting at the stage's start. The planned
runs fill only PLANNED_SHARE of what is left of the slice: a noisy machine may still ask for more
rounds, and those then fill the same share of the rest, so the fraction never goes back and never
sits at the slice's end while runs go on.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]
PLANNED_SHARE = 0.8  # of the rest of a slice, for the runs planned so far


class RunProgress:
    """A (fraction, message) progress callback that counts runs. `slice` at each batch size, `plan`
    when runs are added, `ran` after each run, `say` to report a message at the current fraction."""

    def __init__(self, progress: Progress | None):
        self.progress, self.fraction = progress or (lambda f, s: None), 0.0
        self.start, self.end, self.base, self.inner, self.done, self.planned = 0.0, 1.0, 0.0, 0.0, 0, 0

    def slice(self, start: float, end: float, runs: int) -> "RunProgress":
        """A batch size begins: it spans [start, end] of the stage and `runs` runs are planned so far."""
        self.start, self.end, self.base, self.inner, self.done, self.planned = start, end, 0.0, 0.0, 0, runs
        self.fraction = max(self.fraction, start)
        return self

    def plan(self, runs: int) -> "RunProgress":
        """`runs` more runs in this slice than planned: they share what is left of it."""
        self.base, self.planned, self.done = self.inner, self.planned - self.done + runs, 0
        return self

    def ran(self) -> "RunProgress":
        self.done += 1
        if self.planned:
            self.inner = self.base + (1.0 - self.base) * PLANNED_SHARE * min(1.0, self.done / self.planned)
        self.fraction = max(self.fraction, self.start + (self.end - self.start) * self.inner)
        return self

    def say(self, message: str) -> None:
        self.progress(self.fraction, message)

    def __call__(self, fraction: float, message: str) -> None:
        self.fraction = max(self.fraction, float(fraction))
        self.progress(self.fraction, message)
