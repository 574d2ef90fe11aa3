"""Running a scenario once under the lab, and the handle scenarios get.

One lab run is one ``corral.run`` of the scenario on one backend, with debug
canaries on, an :class:`~._injector.Injector` installed, and the census taken
around it. Everything the run leaves behind is turned into a
:class:`RunRecord`; nothing is raised, so a long run can add up totals.
"""

from __future__ import annotations

import gc
import random
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from math import inf
from typing import Any

import attrs

from ..._core import (
    Cancelled,
    CancelScope,
    cancel_shielded_checkpoint,
    current_statistics,
)
from ..._core import run as _core_run
from ..._io._backend import Backend
from ..._io._select import make_io_manager_factory
from ..._io.pool import BufferCorruptionError, BufferLeakError, BufferPool
from .._mock_clock import MockClock
from ._injector import CancelSite, Injector
from ._invariants import (
    ByteStreamChecker,
    RuntimeCensus,
    StreamStatistics,
    fd_census,
    leaked_fds,
)

Scenario = Callable[["CancelLab"], Awaitable[object]]

#: Loop turns a finished scenario's orphaned operations get to complete
#: before the ones still in flight count as leaked.
_DRAIN_TURNS = 200


class CancelLab:
    """The handle a scenario receives: ``async def scenario(lab): ...``.

    Attributes:
      backend: the backend this run uses (``"io_uring"``, ``"epoll"``,
        ``"fake"``).
      seed: the run's seed (replay it with the same seed).
      rng: a :class:`random.Random` seeded from ``seed``, for the scenario's
        own choices (sizes, orders), so that a replay makes the same ones.
      injected: the :class:`CancelSite` records of the cancellations the lab
        has injected so far in this run.
    """

    def __init__(self, backend: str, seed: int) -> None:
        self.backend = backend
        self.seed = seed
        self.rng = random.Random(seed)
        self._scopes: dict[CancelScope, str] = {}
        self._streams: list[ByteStreamChecker] = []
        self._checks: list[Callable[[], object]] = []
        self._injector: Injector | None = None
        #: Cancellations made by something other than the injector (the
        #: race explorer), for the record.
        self._extra_injected: list[CancelSite] = []
        #: Problems found by the lab's own machinery (a race schedule that
        #: could not run), reported as failures.
        self._lab_problems: list[str] = []
        #: Random mode: returns a relative deadline for a new region, or inf.
        self._deadline_policy: Callable[[], float] | None = None

    @property
    def injected(self) -> list[CancelSite]:
        """Cancellations injected so far in this run."""
        own = [] if self._injector is None else list(self._injector.injected)
        return own + self._extra_injected

    def cancellable(self) -> CancelScope:
        """A cancel scope the lab may cancel (a *region*).

        Use it as ``with lab.cancellable(): ...`` around the code whose
        cancel points the lab should exercise. When a scenario uses no
        region, the lab uses one around the whole scenario instead (see
        :func:`cancel_at_every_checkpoint`). The scope is an ordinary
        :class:`corral.CancelScope`; check ``scope.cancelled_caught`` to
        learn whether the injected cancellation ended the block.
        """
        scope = CancelScope()
        if self._deadline_policy is not None:
            deadline = self._deadline_policy()
            if deadline != inf:
                scope.relative_deadline = deadline
        self._scopes[scope] = "region"
        return scope

    def stream(self, name: str = "stream") -> ByteStreamChecker:
        """A new :class:`ByteStreamChecker` seeded with the run's seed; its
        totals are added to the run's record (lost / duplicated bytes)."""
        checker = ByteStreamChecker(f"{name}#{len(self._streams)}", self.seed)
        self._streams.append(checker)
        return checker

    def check(self, fn: Callable[[], object]) -> None:
        """Register ``fn()`` to run after the scenario (inside the run); an
        exception it raises fails the run."""
        self._checks.append(fn)


@attrs.frozen
class RunRecord:
    """The outcome of one lab run.

    Attributes:
      backend, seed: how to replay it (with ``sites`` for the injection).
      injected: the sites where a cancellation was injected.
      failure: ``None`` if every invariant held, else what went wrong.
      error: the exception behind ``failure`` (``None`` for census leaks).
      streams: totals of every :class:`ByteStreamChecker` of the run.
      canary_violations: ``BufferCorruptionError`` raised in the run.
      leaked_leases / leaked_ops / leaked_fds / leaked_tasks: what the run
        left behind (descriptions; ``leaked_tasks`` is a count).
      sites_seen: sites the run reached (counted, injected or not).
      recorded_sites: every site reached (counting runs only).
      schedule: the race explorer's ordering, for its runs.
    """

    backend: str
    seed: int
    injected: tuple[CancelSite, ...]
    failure: str | None
    error: BaseException | None
    streams: tuple[StreamStatistics, ...]
    canary_violations: int
    leaked_leases: tuple[str, ...]
    leaked_ops: tuple[str, ...]
    leaked_fds: tuple[str, ...]
    leaked_tasks: int
    sites_seen: int
    recorded_sites: tuple[CancelSite, ...] = ()
    schedule: str | None = None

    @property
    def lost_bytes(self) -> int:
        """Bytes lost over every stream of the run."""
        return sum(s.lost for s in self.streams)

    @property
    def duplicated_bytes(self) -> int:
        """Bytes duplicated over every stream of the run."""
        return sum(s.duplicated for s in self.streams)

    @property
    def corrupted_bytes(self) -> int:
        """Bytes matching no offset of their stream."""
        return sum(s.corrupted for s in self.streams)

    @property
    def ok(self) -> bool:
        """True if the run broke no invariant."""
        return self.failure is None


# -- backends --------------------------------------------------------------------


#: ``make_backend(lab, pool, guest)``: builds the fake kernel for a run.
BackendMaker = Callable[["CancelLab", BufferPool, bool], Backend]


def _factory(
    backend: str,
    *,
    lab: CancelLab,
    buffer_size: int,
    buffers: int,
    make_backend: BackendMaker | None = None,
) -> Any:
    seed = lab.seed
    if make_backend is not None:

        def custom_factory(guest: bool = False) -> Backend:
            return make_backend(lab, BufferPool(buffer_size, buffers, debug=True), guest)

        return custom_factory
    if backend == "fake":
        from ._loopback import LoopbackKernel

        def fake_factory(guest: bool = False) -> Backend:
            pool = BufferPool(buffer_size, buffers, debug=True)
            return LoopbackKernel(pool, seed=seed, guest=guest)

        return fake_factory
    return make_io_manager_factory(backend, debug=True, buffer_size=buffer_size, buffers=buffers)


def available_backends() -> list[str]:
    """The lab's backends that can start here: ``io_uring`` and ``epoll``
    (Linux), ``iocp`` and ``afd`` (Windows), and ``fake`` (the fake kernel
    driven by the lab's :class:`~._loopback.LoopbackKernel`, which always
    exists)."""
    names = []
    for name in ("io_uring", "epoll", "iocp", "afd"):
        try:
            manager = make_io_manager_factory(name, debug=False, buffers=1, buffer_size=4096)()
        except (OSError, ImportError, ValueError):
            continue
        manager.close()
        names.append(name)
    names.append("fake")
    return names


# -- one run -----------------------------------------------------------------------


def _flatten(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _flatten(sub)
    else:
        yield exc
        if exc.__cause__ is not None:
            yield from _flatten(exc.__cause__)


@contextmanager
def _resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield caught


def run_once(
    scenario: Scenario,
    *,
    backend: str,
    seed: int = 0,
    decide: Callable[[int, str, str], bool] = lambda index, kind, region: False,
    record: bool = False,
    max_injections: float = inf,
    autojump: bool = False,
    buffer_size: int = 4096,
    buffers: int = 64,
    deadline_policy: Callable[[], float] | None = None,
    make_backend: BackendMaker | None = None,
) -> RunRecord:
    """Run ``scenario`` once on ``backend`` and report what it left behind.

    ``decide(index, kind, region)`` picks the sites to cancel at (see
    :class:`~._injector.Injector`); ``record`` keeps every site reached.
    Never raises for a scenario failure: the record says what failed.
    ``make_backend`` replaces the backend (the race explorer's kernel).
    """
    lab = CancelLab(backend, seed)
    lab._deadline_policy = deadline_policy
    root = CancelScope()
    lab._scopes[root] = "scenario"
    injector = Injector(lab._scopes, decide, record=record, max_injections=max_injections)
    lab._injector = injector
    census: list[RuntimeCensus] = []
    check_errors: list[BaseException] = []

    async def main() -> None:
        tasks_before = current_statistics().tasks_living
        try:
            with root:
                await scenario(lab)
        finally:
            injector.enabled = False
            # Shielded: the census must run even if the scenario was
            # cancelled from outside the lab's scopes.
            with CancelScope(shield=True):
                await _take_census(tasks_before, census)
        for fn in lab._checks:
            try:
                fn()
            except BaseException as exc:
                check_errors.append(exc)

    # The scenario's task carries the scenario's name in site reports.
    main.__module__ = getattr(scenario, "__module__", main.__module__)
    main.__qualname__ = getattr(scenario, "__qualname__", main.__qualname__)
    extra: dict[str, Any] = {}
    if autojump:
        extra["clock"] = MockClock(autojump_threshold=0)
    error: BaseException | None = None
    before = fd_census()
    with _resource_warnings() as caught:
        try:
            _core_run(
                main,
                io_manager_factory=_factory(
                    backend,
                    lab=lab,
                    buffer_size=buffer_size,
                    buffers=buffers,
                    make_backend=make_backend,
                ),
                instruments=[injector],
                **extra,
            )
        except BaseException as exc:
            error = exc
        gc.collect()
    after = fd_census()
    return _record(lab, injector, census, check_errors, error, before, after, caught)


async def _take_census(tasks_before: int, out: list[RuntimeCensus]) -> None:
    from ..._io.perform import current_backend

    backend = current_backend()
    for _ in range(_DRAIN_TURNS):
        if not backend.in_flight_count():
            break
        await cancel_shielded_checkpoint()
    pool = backend.pool
    out.append(
        RuntimeCensus(
            ops_in_flight=tuple(repr(op) for op in backend.in_flight_ops()),
            leases=tuple(pool.leaks()),
            tasks=current_statistics().tasks_living - tasks_before,
        )
    )
    # The leak is recorded; give the buffers back so the backend's own
    # end-of-run check passes and the next run starts clean. (When that
    # check raises from the backend's close(), corral._core does not clear
    # its run state: the next corral.run in this thread would fail with
    # "Attempted to call run() from inside a run()".)
    for lease in list(pool._leases.values()):
        lease.release()


def _record(
    lab: CancelLab,
    injector: Injector,
    census: list[RuntimeCensus],
    check_errors: list[BaseException],
    error: BaseException | None,
    before: dict[int, str],
    after: dict[int, str],
    caught: list[warnings.WarningMessage],
) -> RunRecord:
    problems: list[str] = list(lab._lab_problems)
    canaries = 0
    culprit: BaseException | None = None
    if injector.error is not None:
        raise RuntimeError("corral cancel lab: internal error in the injector") from injector.error
    if error is not None:
        for exc in _flatten(error):
            if isinstance(exc, Cancelled):
                problems.append("Cancelled escaped the scenario (a cancel scope was left)")
            elif isinstance(exc, BufferCorruptionError):
                canaries += 1
                problems.append(f"canary violation: {exc}")
            elif isinstance(exc, BufferLeakError):
                problems.append(f"leak at the end of the run: {exc}")
            else:
                problems.append(f"{type(exc).__name__}: {exc}")
            culprit = culprit or exc
    for exc in check_errors:
        problems.append(f"check failed: {type(exc).__name__}: {exc}")
        culprit = culprit or exc
    streams = tuple(s.finish(eof=False) for s in lab._streams if s is not None)
    for checker in lab._streams:
        try:
            checker.check()
        except AssertionError as exc:
            problems.append(str(exc))
    ops: tuple[str, ...] = ()
    leases: tuple[str, ...] = ()
    tasks = 0
    if census:
        ops, leases, tasks = census[0].ops_in_flight, census[0].leases, census[0].tasks
    if ops:
        problems.append(f"operations still in flight after the scenario: {', '.join(ops)}")
    if leases:
        problems.append(f"pool leases still held after the scenario: {', '.join(leases)}")
    if tasks:
        problems.append(f"{tasks} task(s) still running after the scenario")
    fds = leaked_fds(before, after)
    fds += [f"closed only by the garbage collector: {w.message}" for w in caught]
    if fds:
        problems.append(f"file descriptors leaked: {'; '.join(fds)}")
    return RunRecord(
        backend=lab.backend,
        seed=lab.seed,
        injected=tuple(lab.injected),
        failure="; ".join(problems) if problems else None,
        error=culprit,
        streams=streams,
        canary_violations=canaries,
        leaked_leases=leases,
        leaked_ops=ops,
        leaked_fds=tuple(fds),
        leaked_tasks=tasks,
        sites_seen=injector.count,
        recorded_sites=tuple(sorted(injector.sites, key=lambda s: s.index)),
    )
