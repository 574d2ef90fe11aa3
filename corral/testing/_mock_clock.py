"""MockClock: a clock that tests control (rate, jump, autojump)."""

from __future__ import annotations

import time
from math import inf

from .._abc import Clock
from .._core._run_context import GLOBAL_RUN_CONTEXT


class MockClock(Clock):
    """A clock for tests: time moves only as fast as you say.

    Args:
      rate: initial :attr:`rate`.
      autojump_threshold: initial :attr:`autojump_threshold`.

    Attributes:
      rate (float): clock seconds per real second. The default ``0.0`` means
        time moves only through :meth:`jump` and autojumps. Assignable;
        negative values raise :exc:`ValueError`.
      autojump_threshold (float): when every task has been blocked for this
        many *real* seconds, the clock jumps straight to the run's next
        deadline or sleep timer. ``inf`` (default) disables it; ``0`` jumps
        as soon as the run is idle, which makes timeout tests instant and
        deterministic (when they do no real I/O). A task blocked in
        :func:`corral.testing.wait_all_tasks_blocked` counts as activity:
        that wait wins and the clock does not jump.
    """

    def __init__(self, rate: float = 0.0, autojump_threshold: float = inf) -> None:
        # Virtual time = virtual_base + rate * (real - real_base).
        self._real_base = 0.0
        self._virtual_base = 0.0
        self._rate = 0.0
        self._autojump_threshold = inf
        self._real_clock = time.perf_counter
        self.rate = rate
        self.autojump_threshold = autojump_threshold

    def __repr__(self) -> str:
        return f"<MockClock, time={self.current_time():.7f}, rate={self._rate} @ {id(self):#x}>"

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, new_rate: float) -> None:
        if new_rate < 0:
            raise ValueError("rate must be >= 0")
        real = self._real_clock()
        self._virtual_base = self._real_to_virtual(real)
        self._real_base = real
        self._rate = float(new_rate)

    @property
    def autojump_threshold(self) -> float:
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, new_autojump_threshold: float) -> None:
        self._autojump_threshold = float(new_autojump_threshold)
        self._try_resync_autojump_threshold()

    def _try_resync_autojump_threshold(self) -> None:
        # The runner reads the threshold from its own attribute (the hook
        # costs nothing when no MockClock is in use); keep it in sync.
        try:
            runner = GLOBAL_RUN_CONTEXT.runner
        except AttributeError:
            return
        if runner.is_guest:
            runner.force_guest_tick_asap()
        if runner.clock is self:
            runner.clock_autojump_threshold = self._autojump_threshold

    def _autojump(self) -> None:
        # Called by the runner when the run has been idle long enough.
        runner = GLOBAL_RUN_CONTEXT.runner
        jump = runner.deadlines.next_deadline() - self.current_time()
        if 0 < jump < inf:
            self.jump(jump)

    def _real_to_virtual(self, real: float) -> float:
        return self._virtual_base + self._rate * (real - self._real_base)

    def start_clock(self) -> None:
        """Hook the autojump threshold into the run that just started."""
        self._try_resync_autojump_threshold()

    def current_time(self) -> float:
        """Return the current virtual time."""
        return self._real_to_virtual(self._real_clock())

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Real seconds until virtual ``deadline`` at the current rate (a
        very long time if the rate is 0)."""
        virtual_timeout = deadline - self.current_time()
        if virtual_timeout <= 0:
            return 0
        if self._rate > 0:
            return virtual_timeout / self._rate
        return 999999999

    def jump(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``.

        Raises:
          ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("time can't go backwards")
        self._virtual_base += seconds
