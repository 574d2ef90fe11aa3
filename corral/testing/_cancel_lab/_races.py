"""The race explorer: every ordering the contract allows, for one operation.

The completion contract leaves open *when* the kernel completes an operation
relative to a cancel request. For one target operation of a scenario, the
explorer runs the scenario once per ordering of

* the cancel request (none, before the kernel's result, after it; in the
  same loop turn or a turn apart, and before or after the kernel first saw
  the submission),
* the kernel's terminal result: the real result (``complete``), a short
  transfer of one byte (``partial``; for ops that move bytes), or "the
  cancel won" (``cancelled``, only after a cancel request -- contract rule
  3 forbids it otherwise),

on the fake kernel. Everything but the target operation runs for real on the
:class:`~._loopback.LoopbackKernel` (with no random delays), so the
scenario's own checks and the lab's invariants decide whether each ordering
is handled.

A schedule is a list of steps executed by the kernel at the start of loop
turns: ``"turn"`` ends the turn; ``"cancel"`` cancels the innermost lab
scope around the task that submitted the target (or the scenario scope);
``"complete"`` / ``"partial"`` post the real result (waiting, turn by turn,
until the operation can complete); ``"cancelled"`` posts ``-ECANCELED``.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from ..._core import CancelScope
from ..._io.ops import IN_FLIGHT, Operation
from ..._io.pool import BufferPool
from ._checkpoints import scenario_name
from ._injector import CancelSite, _where
from ._loopback import LoopbackKernel
from ._report import CancelLabReport
from ._runner import CancelLab, Scenario, run_once

_TRANSFERS = {"read", "write", "recv", "send", "recv_pool", "read_pool"}


def race_schedules() -> dict[str, tuple[str, ...]]:
    """Every ordering the explorer runs, by name."""
    out: dict[str, tuple[str, ...]] = {}
    for seen, result in itertools.product(((), ("turn",)), ("complete", "partial")):
        out[_name((*seen, result))] = (*seen, result)
    for seen, gap in itertools.product(((), ("turn",)), ((), ("turn",))):
        for outcome in ("cancelled", "complete", "partial"):
            steps = (*seen, "cancel", *gap, outcome)
            out[_name(steps)] = steps
        for result in ("complete", "partial"):
            steps = (*seen, result, *gap, "cancel")
            out[_name(steps)] = steps
    return out


def _name(steps: Sequence[str]) -> str:
    return " > ".join(["submit", *steps])


class RaceKernel(LoopbackKernel):
    """The loopback kernel, holding back one target op and driving it by a
    schedule (see the module docstring)."""

    def __init__(
        self,
        lab: CancelLab,
        pool: BufferPool,
        steps: Sequence[str],
        choose: Callable[[Operation], bool],
        occurrence: int,
        *,
        guest: bool = False,
    ) -> None:
        LoopbackKernel.__init__(
            self, pool, seed=lab.seed, delay=0, short=0, cancel_wins=0, guest=guest
        )
        self.lab = lab
        self.steps = list(steps)
        self.done_steps: list[str] = []
        self._choose = choose
        self._occurrence = occurrence
        self._matches = 0
        self.target: Operation | None = None
        self._target_task: Any = None
        self._target_scope: CancelScope | None = None
        self._started = False

    def submit(self, op: Operation) -> None:
        LoopbackKernel.submit(self, op)
        if self.target is None and self._choose(op):
            self._matches += 1
            if self._matches == self._occurrence:
                from ..._core import current_task

                self.target = op
                self._target_task = current_task()
                # The scope around the submission: cancelling it later is a
                # no-op once the task left it (never the scenario instead).
                self._target_scope = _lab_scope(self.lab, self._target_task)

    def _held(self, op: Operation) -> bool:
        return op is self.target and bool(self.steps)

    def get_events(self, timeout: float) -> Any:
        if self.target is not None and self.steps:
            if self._started:
                self._run_steps()
            else:
                # The submission reaches the kernel in this turn; the
                # schedule starts with it.
                self._started = True
                self._run_steps()
            if self.steps:
                timeout = 0
        return LoopbackKernel.get_events(self, timeout)

    def _run_steps(self) -> None:
        op = self.target
        assert op is not None
        while self.steps:
            step = self.steps[0]
            if step == "turn":
                self.steps.pop(0)
                self.done_steps.append(step)
                return
            if step == "cancel":
                self._cancel()
            elif step in ("complete", "partial"):
                if op._state == IN_FLIGHT:
                    if step == "partial" and op.kind in _TRANSFERS:
                        self.max_transfer = 1
                    try:
                        completed = self._attempt(op)
                    finally:
                        self.max_transfer = None
                    if not completed:
                        return  # not ready yet: try again next turn
            elif step == "cancelled":
                if op._state == IN_FLIGHT:
                    if not op._cancel_requested:
                        self.lab._lab_problems.append(
                            "race schedule error: 'cancelled' before any cancel request"
                        )
                    self._finish(op, -errno.ECANCELED)
            self.steps.pop(0)
            self.done_steps.append(step)

    def _cancel(self) -> None:
        task = self._target_task
        scope = self._target_scope
        if scope is None:
            return
        self.lab._extra_injected.append(
            CancelSite(
                index=len(self.done_steps) + 1,
                kind="race",
                task=task.name,
                where=_where(task),
                operation=repr(self.target),
                region=self.lab._scopes[scope],
            )
        )
        scope.cancel(reason="corral cancel lab: race explorer")


def _lab_scope(lab: CancelLab, task: Any) -> CancelScope | None:
    node: CancelScope | None = task._cancel_status
    while node is not None:
        if node in lab._scopes:
            return node
        if node.shield:
            return None
        node = node._parent
    return None


def explore_races(
    scenario: Scenario,
    *,
    kind: str | None = None,
    choose: Callable[[Operation], bool] | None = None,
    occurrence: int = 1,
    schedules: Sequence[str] | None = None,
    seed: int = 0,
    buffer_size: int = 4096,
    buffers: int = 64,
) -> CancelLabReport:
    """Run ``scenario`` on the fake kernel once per ordering of the target
    operation's cancel request and terminal result (:func:`race_schedules`).

    The target is the ``occurrence``-th operation submitted that
    ``choose(op)`` accepts (default: ``op.kind == kind``, or any operation
    if ``kind`` is ``None`` too). ``schedules`` restricts the orderings by
    name. The cancellation goes to the innermost ``lab.cancellable()`` scope
    around the task that submitted the target (the whole scenario if there
    is none).

    Returns a :class:`CancelLabReport` (mode ``"races"``); a run whose
    scenario never submitted the target fails with "race target never
    submitted".
    """
    if choose is None:
        wanted = kind

        def choose(op: Operation) -> bool:
            return wanted is None or op.kind == wanted

    chosen = choose
    every = race_schedules()
    names = list(every) if schedules is None else list(schedules)
    for name in names:
        if name not in every:
            raise ValueError(f"unknown race schedule {name!r}")
    report = CancelLabReport(scenario_name(scenario), "races")
    for name in names:
        kernels: list[RaceKernel] = []

        def make(
            lab: CancelLab,
            pool: BufferPool,
            guest: bool,
            steps: Any = every[name],
            kernels: list[RaceKernel] = kernels,
        ) -> Any:
            kernel = RaceKernel(lab, pool, steps, chosen, occurrence, guest=guest)
            kernels.append(kernel)
            return kernel

        record = run_once(
            scenario,
            backend="fake",
            seed=seed,
            buffer_size=buffer_size,
            buffers=buffers,
            make_backend=make,
        )
        kernel = kernels[0] if kernels else None
        problem = None
        if kernel is None or kernel.target is None:
            problem = "race target never submitted"
        record = _with_schedule(record, name, problem)
        report.add(record)
    report.replay_hint = (
        f"corral.testing.explore_races({getattr(scenario, '__qualname__', 'scenario')}, "
        "kind=..., schedules=[<the schedule named above>])"
    )
    return report


def _with_schedule(record: Any, name: str, problem: str | None) -> Any:
    import attrs

    failure = record.failure
    if problem is not None:
        failure = problem if failure is None else f"{problem}; {failure}"
    if failure is not None:
        failure = f"[{name}] {failure}"
    return attrs.evolve(record, failure=failure, schedule=name)
