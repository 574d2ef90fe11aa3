"""The default clock: the system's monotonic clock plus a random offset."""

from __future__ import annotations

import random
from time import perf_counter

from .._abc import Clock

# A process-wide generator for the offset. A large random offset makes code
# that mixes corral time with time.perf_counter() (or compares clocks across
# runs) fail loudly instead of working by accident.
_offset_rng = random.Random()


class SystemClock(Clock):
    """The clock :func:`corral.run` uses when no ``clock=`` is given.

    It reads :func:`time.perf_counter` (monotonic) plus a random offset chosen
    per instance, so its values are meaningful only relative to each other
    within one run.
    """

    __slots__ = ("offset",)

    def __init__(self, offset: float | None = None) -> None:
        self.offset = _offset_rng.uniform(10000, 200000) if offset is None else offset

    def start_clock(self) -> None:
        """Nothing to do: the system clock always runs."""

    def current_time(self) -> float:
        """Return the current time in seconds on this clock."""
        return self.offset + perf_counter()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Return how many real seconds remain until ``deadline``."""
        return deadline - self.current_time()

    def __repr__(self) -> str:
        return f"SystemClock(offset={self.offset!r})"
