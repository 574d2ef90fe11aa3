"""Where a cancellation can be injected, and the instrument that injects it.

A *site* is a moment at which the lab may cancel a scenario's cancel scope.
The lab numbers sites in the order the scheduler reaches them, so that a
deterministic scenario reaches site ``k`` in the same state on every run:
the first run counts the sites, later runs cancel at one of them.

Sites are observed with public instrument hooks only (``before_task_step``,
``after_task_step``, ``after_io_wait``) plus the task's scheduler fields,
read but never written. Three kinds, for a task inside a cancellable region
(a scope made by :meth:`CancelLab.cancellable`, not shielded from it and not
already cancelled):

``"step"``
  Just before the task is resumed, unless it resumes from a plain
  checkpoint (that moment is the previous ``"trap"`` site). The cancel is
  seen by the first cancel point the task passes in this step: typically
  the ``checkpoint_if_cancelled`` at the top of ``perform``, so nothing is
  submitted; or, when the task resumes with an operation's result, the next
  cancel point *after* the result was delivered -- the moment where a
  careless caller drops data it already holds.

``"trap"``
  Just after the task yielded to the scheduler at a cancel point: a
  checkpoint, a sleep, or a park in ``wait_task_rescheduled``. For a task
  parked in ``perform`` the operation is submitted but not yet flushed to
  the kernel, so the kernel sees the operation and its cancel request in the
  same batch.

``"in_flight"``
  For a task parked in ``perform``: one loop turn later (after that turn's
  completions were delivered), when the kernel has had the operation for a
  whole turn. If the operation completed in that turn the cancel lands on
  the resumed task instead, like a ``"step"`` site.

Without a core hook the lab cannot stop *between* two inline cancel points
of one step (two ``checkpoint_if_cancelled`` calls with no yield between
them); a ``"step"`` site reaches the first one only. ``docs/cancel-safety.md``
describes the hook that would close this gap.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from math import inf
from typing import TYPE_CHECKING, Any

import attrs

from ..._abc import Instrument
from ..._core import CancelScope
from ..._core._traps import CHECKPOINT

if TYPE_CHECKING:
    from ..._core import Task

#: The kinds of sites, in the order they can occur for one operation.
SITE_KINDS = ("step", "trap", "in_flight")


@attrs.frozen
class CancelSite:
    """One place where the lab injected (or could inject) a cancellation.

    Attributes:
      index: the site's number ``k`` in its run, from 1.
      kind: ``"step"``, ``"trap"`` or ``"in_flight"`` (module docstring).
      task: the name of the task whose cancel point it is.
      where: the innermost frame the task is suspended in, as
        ``"file:line in function"`` (empty for a task not started yet).
      operation: ``repr`` of the operation the task waits for in
        ``perform``, or ``None``.
      region: ``"region"`` for a scope made by ``lab.cancellable()``,
        ``"scenario"`` for the whole-scenario scope.
    """

    index: int
    kind: str
    task: str
    where: str
    operation: str | None
    region: str

    def describe(self) -> str:
        """One line for a failure report."""
        op = f", operation {self.operation}" if self.operation else ""
        at = f" at {self.where}" if self.where else ""
        return f"site k={self.index} ({self.kind}) in task {self.task!r}{at}{op}"


_CORRAL_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# corral's own lab scenarios count as user code in reports.
_SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_scenarios.py")


def _is_user_frame(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path == _SCENARIOS or not path.startswith(_CORRAL_DIR + os.sep)


def _where(task: Task) -> str:
    """The innermost frame of ``task`` outside corral itself (the user's
    line that is waiting), else the innermost frame."""
    innermost: types.FrameType | None = None
    chosen: types.FrameType | None = None
    for frame, _ in task.iter_await_frames():
        innermost = frame
        if _is_user_frame(frame.f_code.co_filename):
            chosen = frame
    found = chosen or innermost
    if found is None:
        return ""
    return f"{found.f_code.co_filename}:{found.f_lineno} in {found.f_code.co_name}"


def _operation_of(task: Task) -> Any:
    """The op ``task`` is parked on in ``perform``, if any."""
    from ..._core import current_io_manager

    manager: Any = current_io_manager()
    ops = getattr(manager, "in_flight_ops", None)
    if ops is None:
        return None
    for op in ops():
        if op._task is task:
            return op
    return None


class Injector(Instrument):
    """The run instrument that counts sites and cancels at chosen ones.

    ``decide(index, kind, region)`` is asked at every site (numbered from 1)
    and returns whether to cancel there; ``region`` is ``"region"`` or
    ``"scenario"`` (see :class:`CancelSite`), so a caller can leave the
    whole-scenario scope alone when the scenario marks regions. Every site
    is counted either way, so numbering never depends on the choice.
    ``record`` keeps a :class:`CancelSite` for every site (the
    counting run); otherwise only injected sites are described.

    Errors inside the hooks are kept in :attr:`error` (an instrument that
    raises would be removed silently by the scheduler) and re-raised by the
    lab after the run.
    """

    def __init__(
        self,
        lab_scopes: dict[CancelScope, str],
        decide: Callable[[int, str, str], bool],
        *,
        record: bool,
        max_injections: float = inf,
    ) -> None:
        self._scopes = lab_scopes
        self._decide = decide
        self._record = record
        self._max = max_injections
        self.count = 0
        self.sites: list[CancelSite] = []
        self.injected: list[CancelSite] = []
        self.injected_scopes: list[CancelScope] = []
        self.error: BaseException | None = None
        self.enabled = True
        # Tasks parked in perform one turn ago: (task, site index, scope).
        self._deferred: list[tuple[Task, int, CancelScope]] = []

    # -- target lookup ----------------------------------------------------

    def _target(self, task: Task) -> CancelScope | None:
        """The innermost lab scope a cancel would reach ``task`` through."""
        node: CancelScope | None = task._cancel_status
        if node is None or node.effectively_cancelled:
            return None
        scopes = self._scopes
        while node is not None:
            kind = scopes.get(node)
            if kind is not None:
                return node
            if node.shield:
                return None
            node = node._parent
        return None

    # -- counting and injecting -------------------------------------------

    def _site(self, task: Task, kind: str, scope: CancelScope) -> None:
        self.count += 1
        index = self.count
        inject = len(self.injected) < self._max and self._decide(index, kind, self._scopes[scope])
        if not (inject or self._record):
            return
        op = _operation_of(task)
        site = CancelSite(
            index=index,
            kind=kind,
            task=task.name,
            where=_where(task),
            operation=None if op is None else repr(op),
            region=self._scopes[scope],
        )
        if self._record:
            self.sites.append(site)
        if inject:
            self._inject(site, scope)

    def _inject(self, site: CancelSite, scope: CancelScope) -> None:
        self.injected.append(site)
        self.injected_scopes.append(scope)
        scope.cancel(reason=f"corral cancel lab: {site.describe()}")

    def before_task_step(self, task: Task) -> None:
        if not self.enabled:
            return
        try:
            if task._next_send is CHECKPOINT:
                return
            scope = self._target(task)
            if scope is not None:
                self._site(task, "step", scope)
        except BaseException as exc:  # pragma: no cover - lab bug
            self._fail(exc)

    def after_task_step(self, task: Task) -> None:
        if not self.enabled:
            return
        try:
            at_checkpoint = task._next_send is CHECKPOINT and task._next_send_fn is not None
            parked = task._next_send_fn is None and task._abort_func is not None
            if not (at_checkpoint or parked):
                return
            scope = self._target(task)
            if scope is None:
                return
            self._site(task, "trap", scope)
            if parked and not scope.cancel_called and _operation_of(task) is not None:
                # The in-flight site is numbered now, injected one turn later.
                self.count += 1
                self._deferred.append((task, self.count, scope))
        except BaseException as exc:  # pragma: no cover - lab bug
            self._fail(exc)

    def after_io_wait(self, timeout: float) -> None:
        if not self._deferred:
            return
        try:
            deferred, self._deferred = self._deferred, []
            for task, index, scope in deferred:
                if not self.enabled or scope.cancel_called:
                    continue
                inject = len(self.injected) < self._max and self._decide(
                    index, "in_flight", self._scopes[scope]
                )
                if not (inject or self._record):
                    continue
                op = _operation_of(task)
                site = CancelSite(
                    index=index,
                    kind="in_flight",
                    task=task.name,
                    where=_where(task),
                    operation=None if op is None else repr(op),
                    region=self._scopes[scope],
                )
                if self._record:
                    self.sites.append(site)
                if inject:
                    self._inject(site, scope)
        except BaseException as exc:  # pragma: no cover - lab bug
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.enabled = False
