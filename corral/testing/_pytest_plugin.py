"""corral's pytest plugin: run async tests and async fixtures in ``corral.run``.

Registered through the ``pytest11`` entry point, so it is loaded wherever
corral is installed; it touches only tests that opt in (``@pytest.mark.corral``
or the ``corral_mode`` ini option) and the fixtures those tests use.

What a corral test gets (the same model as pytest-trio's):

- The test and every async fixture it uses, directly or not, run inside ONE
  ``corral.run``. A fixture is a corral fixture when it is async (and the
  test is a corral test), when it depends on a corral fixture, or when it is
  decorated with :func:`corral.testing.corral_fixture`. Corral fixtures must
  be function-scoped.
- Each fixture, and the test, runs in its own task, all of them siblings.
  A fixture's setup starts once everything it depends on is set up; its
  teardown starts once everything that depends on it (fixtures and the test)
  has finished. Independent fixtures set up and tear down concurrently.
  They all share one ``contextvars`` context, so a context variable set by a
  fixture is visible to the test.
- A crash anywhere (a fixture's setup or teardown, a background task a
  fixture started, the test) makes the test fail with that exception; the
  test, if running, is cancelled and the teardown sequence starts. A
  fixture that silently cancels the test is reported too. As a pytest
  fixture error would be, a fixture crash counts as a test *failure*.
- Reporting: each exception is reported as its code raised it, never
  wrapped by the plugin's own plumbing (a test's own nursery still gives
  its exception group). Several failures in one test are reported as one
  ``BaseExceptionGroup("errors in async test and corral fixtures", ...)``.
  A skip / xfail / fail / exit that is the only exception, however deep in
  exception groups, is re-raised bare so pytest reports it as such; a
  KeyboardInterrupt anywhere is re-raised so the session stops.
- ``mock_clock`` / ``autojump_clock`` fixtures: a test that uses (directly or
  through other fixtures) a :class:`corral.abc.Clock` runs with that clock;
  :class:`corral.abc.Instrument` fixture values are installed likewise.
- ``nursery``: a nursery owned by the requesting fixture or test, cancelled
  when that fixture is torn down or the test finishes.

``corral_run`` (ini) or ``@pytest.mark.corral(run=...)`` replace
:func:`corral.run` by another function with its signature.

pytest-timeout (``signal`` method) keeps working: its alarm cancels the test
cleanly and fails it with pytest-timeout's message (see ``_TimeoutBridge``).

``@pytest.mark.trio`` is accepted as an alias of ``@pytest.mark.corral`` so
that Trio test suites port unchanged, but only when pytest-trio is not
loaded: if it is, the ``trio`` marker stays pytest-trio's.

Hypothesis-wrapped tests are not supported yet.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import inspect
import signal
import threading
import traceback
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, final

import outcome
import pytest
from _pytest.fixtures import resolve_fixture_function

from .._core import (
    Cancelled,
    CancelScope,
    CorralToken,
    RunFinishedError,
    checkpoint,
    current_corral_token,
    current_root_task,
    current_task,
    open_nursery,
)
from .._sync import Event
from ..abc import Clock, Instrument
from ._corral_fixture import CORRAL_FIXTURE_FLAG
from ._mock_clock import MockClock

if TYPE_CHECKING:
    from _pytest.fixtures import FixtureDef, SubRequest

    from .._core import Nursery, Task

__all__ = [
    "autojump_clock",
    "mock_clock",
    "nursery",
    "pytest_addoption",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_fixture_setup",
    "pytest_pyfunc_call",
]

_TRIO_ALIAS = pytest.StashKey[bool]()

# pytest's exceptions for skip / xfail / fail / exit: when one of these is
# the only thing a test raised, even from deep inside nurseries, it is
# re-raised bare so pytest reports a skip (xfail, ...), not a failure.
_PYTEST_OUTCOMES: tuple[type[BaseException], ...] = (
    pytest.skip.Exception,
    pytest.xfail.Exception,
    pytest.fail.Exception,
    pytest.exit.Exception,
)


################################################################
# Options, markers, corral mode
################################################################


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "corral_mode",
        "run every async test and async fixture with corral (no marker needed)",
        type="bool",
        default=False,
    )
    parser.addini(
        "corral_run",
        "the run function for corral tests: 'corral' (corral.run) or 'module:function'",
        default="corral",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "corral: run this async test, and its async fixtures, inside corral.run",
    )
    # pytest-trio registers itself under the name "trio"; the marker is then
    # its, and corral must not run those tests a second way.
    alias = not config.pluginmanager.hasplugin("trio")
    config.stash[_TRIO_ALIAS] = alias
    if alias:
        config.addinivalue_line(
            "markers",
            "trio: alias of the corral marker (pytest-trio is not installed)",
        )


def _marker_names(config: pytest.Config) -> tuple[str, ...]:
    return ("corral", "trio") if config.stash.get(_TRIO_ALIAS, False) else ("corral",)


def _is_corral_test(node: pytest.Item | pytest.Collector) -> bool:
    """Whether corral runs ``node`` (a test, or for a class-scoped fixture,
    a class)."""
    names = _marker_names(node.config)
    if not any(node.get_closest_marker(name) is not None for name in names):
        return False
    if isinstance(node, pytest.Function) and not inspect.iscoroutinefunction(node.obj):
        # A sync test under a module or class mark is an ordinary test; a
        # mark on the sync function itself is a mistake, reported when the
        # test runs.
        return any(mark.name in names for mark in node.own_markers)
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getini("corral_mode"):
        return
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.corral)


def _choose_run(item: pytest.Function) -> Callable[..., object]:
    """The run function: the closest marker's ``run=``, else ``corral_run``."""
    names = _marker_names(item.config)
    for mark in item.iter_markers():
        run = mark.kwargs.get("run") if mark.name in names else None
        if run is not None:
            return run  # type: ignore[no-any-return]  # a user-supplied callable
    spec = item.config.getini("corral_run")
    if spec == "corral":
        import corral

        return corral.run
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"{spec!r} not valid for 'corral_run' config."
            "  Must be one of: corral, or a 'module:function' path"
        )
    run = getattr(importlib.import_module(module_name), attr)
    return run  # type: ignore[no-any-return]  # a user-supplied callable


################################################################
# Fixtures as tasks
################################################################


@final
class _TestState:
    """What the tasks of one test share."""

    def __init__(self) -> None:
        self.crashed = False
        # Cancel scopes of the nodes still setting up (and of the test while
        # it runs): what a crash must interrupt so teardown can begin.
        self.interruptible: set[CancelScope] = set()
        self.errors: list[BaseException] = []
        # Nodes whose scope was cancelled while their users ran, and nodes
        # that raised: a node in the first list only "cancelled the test but
        # didn't raise an error".
        self.cancellers: list[_Node] = []
        self.raisers: list[_Node] = []

    def crash(self, node: _Node, exc: BaseException | None) -> None:
        if exc is None:
            self.cancellers.append(node)
        elif not any(exc is error for error in self.errors):
            # Not yet recorded (see ``record``): the same exception can
            # come back when it propagates out of the test.
            self.record(node, exc)
        self.crashed = True
        for scope in self.interruptible:
            scope.cancel()

    def record(self, node: _Node, exc: BaseException) -> None:
        """Note ``exc`` as an error of ``node`` without cancelling
        anything: safe from a signal handler, whatever the main thread was
        doing (list appends are atomic)."""
        self.errors.append(exc)
        self.raisers.append(node)


@final
class _NurseryPlaceholder:
    """The value of the ``nursery`` fixture until a node replaces it by its
    own nursery."""


_NURSERY = _NurseryPlaceholder()
_NURSERY_FLAG = "_corral_nursery_fixture"


@final
class _Node:
    """One corral fixture, or the test itself (a fixture that nobody uses
    and that has no teardown).

    pytest sees this object as the fixture's value; the real value is only
    computed inside the run, in this node's own task.
    """

    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        kwargs: dict[str, object],
        *,
        is_test: bool = False,
        extra_deps: tuple[_Node, ...] = (),
    ) -> None:
        self.name = name
        self._func = func
        self._kwargs = kwargs
        self._is_test = is_test
        # Nodes the test needs that are not arguments (autouse fixtures,
        # usefixtures): they must run but their values are not passed.
        self._extra_deps = extra_deps
        self.value: object = None
        self._users_finished: list[Event] = []
        # True for the ``nursery`` fixture's node: whoever uses it gets its
        # own nursery as the value.
        self.provides_nursery = getattr(func, _NURSERY_FLAG, False)
        self._wants_nursery = any(
            isinstance(value, _Node) and value.provides_nursery for value in kwargs.values()
        )

    def __repr__(self) -> str:
        return f"<corral test node {self.name}>"

    def _deps(self) -> Iterator[_Node]:
        for value in self._kwargs.values():
            if isinstance(value, _Node):
                yield value
        yield from self._extra_deps

    def prepare(self, ordered: dict[_Node, None]) -> None:
        """Create this node's events (inside the run) and add it and its
        dependencies to ``ordered``, dependencies first; register, on each
        dependency, the event that says this node is finished."""
        if self in ordered:
            return

        self.setup_done = Event()
        self.finished = Event()
        self._users_finished = []
        for dep in self._deps():
            dep.prepare(ordered)
            dep._users_finished.append(self.finished)
        ordered[self] = None

    async def run(self, state: _TestState, context: contextvars.Context) -> None:
        __tracebackhide__ = True

        # All nodes share one context so that a context variable a fixture
        # sets is seen by the test. The runner reads task.context at every
        # step, so the switch takes effect from the next one.
        current_task().context = context
        await checkpoint()
        errors: list[BaseException | None] = []
        try:
            # A node gets a nursery only if it asked for the ``nursery``
            # fixture, so that a test's task looks as it would outside
            # pytest (no extra child nursery, no wrapping exception group).
            if self._wants_nursery:
                async with open_nursery() as nursery:
                    errors.append(await self._guarded(state, nursery.cancel_scope, nursery))
            else:
                with CancelScope() as scope:
                    errors.append(await self._guarded(state, scope, None))
        except BaseException as exc:
            # Tasks started on the ``nursery`` fixture failed: a real group.
            errors.append(exc)
        finally:
            for error in errors:
                if error is not None:
                    state.crash(self, error)
            # Whatever happened, nobody may stay blocked on us.
            self.setup_done.set()
            self.finished.set()

    async def _guarded(
        self, state: _TestState, scope: CancelScope, nursery: Nursery | None
    ) -> BaseException | None:
        """Run the node's life in ``scope``; return (not raise) its error,
        so that it is reported bare, not wrapped in an exception group by the
        node's nursery. Cancelled (also a group of nothing but Cancelled)
        goes on to ``scope``, which it belongs to."""
        __tracebackhide__ = True
        try:
            await self._lifecycle(state, scope, nursery)
        except Cancelled:
            raise
        except BaseException as exc:
            if isinstance(exc, BaseExceptionGroup) and exc.split(Cancelled)[1] is None:
                # Only Cancelled, out of the test's own nurseries: it too
                # belongs to ``scope`` (which strips it), not to the report.
                raise
            return exc
        finally:
            # The node's nursery lives exactly as long as the node.
            scope.cancel()
        return None

    async def _lifecycle(
        self, state: _TestState, scope: CancelScope, nursery: Nursery | None
    ) -> None:
        __tracebackhide__ = True

        kwargs: dict[str, object] = {}
        for name, value in self._kwargs.items():
            if isinstance(value, _Node):
                await value.setup_done.wait()
                kwargs[name] = nursery if value.provides_nursery else value.value
            else:
                kwargs[name] = value
        for dep in self._extra_deps:
            await dep.setup_done.wait()
        if state.crashed:
            # Something already failed: setting up would only be torn down.
            return

        # Until our setup is done, a crash elsewhere must interrupt it.
        state.interruptible.add(scope)
        teardown: object = None
        if self._is_test:
            await self._func(**kwargs)
        else:
            result = self._func(**kwargs)
            if isinstance(result, Coroutine):
                self.value = await result
            elif isinstance(result, AsyncGenerator):
                self.value = await result.asend(None)
                teardown = result
            elif isinstance(result, Generator):
                self.value = result.send(None)
                teardown = result
            else:
                self.value = result
        state.interruptible.discard(scope)
        self.setup_done.set()

        # Now wait for our users. If the fixture yielded inside a cancel
        # scope (its own nursery's, typically) and that scope is cancelled
        # while we wait, the Cancelled belongs inside the fixture, not here:
        # treat it as a crash (the test is cancelled), wait, shielded, for
        # the users to finish, then throw it into the fixture at teardown,
        # where the fixture's scope catches it.
        after_yield: outcome.Outcome[None] = outcome.Value(None)
        try:
            for event in self._users_finished:
                await event.wait()
        except Cancelled as exc:
            after_yield = outcome.Error(exc)
            state.crash(self, None)
            with CancelScope(shield=True):
                for event in self._users_finished:
                    await event.wait()

        if isinstance(teardown, AsyncGenerator):
            try:
                await after_yield.asend(teardown)
            except StopAsyncIteration:
                return
            await teardown.aclose()
            raise RuntimeError("too many yields in fixture")
        if isinstance(teardown, Generator):
            try:
                after_yield.send(teardown)
            except StopIteration:
                return
            teardown.close()
            raise RuntimeError("too many yields in fixture")


async def _run_nodes(test: _Node, timeout: _TimeoutBridge) -> None:
    """The main task of a corral test's run."""
    __tracebackhide__ = True

    state = _TestState()
    timeout.attach(current_corral_token(), state, test)
    ordered: dict[_Node, None] = {}
    test.prepare(ordered)
    context = contextvars.copy_context()
    async with open_nursery() as nursery:
        for node in ordered:
            nursery.start_soon(node.run, state, context, name=node.name)

    errors = list(state.errors)
    for node in state.cancellers:
        if node not in state.raisers:
            errors.append(RuntimeError(f"{node.name} cancelled the test but didn't raise an error"))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("errors in async test and corral fixtures", errors)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _run_test(item: pytest.Function) -> None:
    __tracebackhide__ = True

    fn = item.obj
    if not inspect.iscoroutinefunction(fn):
        pytest.fail(f"test function `{item!r}` is marked corral but is not async")
    run = _choose_run(item)

    # Every value pytest set up for this item, arguments or not, counts: a
    # clock or instrument requested only through another fixture (or by an
    # autouse fixture) applies too.
    values = list({id(v): v for v in item.funcargs.values()}.values())
    clocks = [v for v in values if isinstance(v, Clock)]
    if len(clocks) > 1:
        raise ValueError(f"Expected at most one Clock in kwargs, got {clocks!r}")
    clock: Clock | None = clocks[0] if clocks else None
    instruments: list[Instrument] = [v for v in values if isinstance(v, Instrument)]

    kwargs = {name: item.funcargs[name] for name in item._fixtureinfo.argnames}
    in_kwargs = {id(v) for v in kwargs.values()}
    extra = tuple(v for v in values if isinstance(v, _Node) and id(v) not in in_kwargs)
    test = _Node(f"<test {item.name!r}>", fn, kwargs, is_test=True, extra_deps=extra)
    try:
        with _TimeoutBridge(item.config) as timeout:
            run(
                functools.partial(_run_nodes, test, timeout),
                clock=clock,
                instruments=instruments,
            )
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], _PYTEST_OUTCOMES):
            raise leaves[0] from None
        for leaf in leaves:
            # Ctrl-C during a test must stop the session, not fail one test.
            if isinstance(leaf, KeyboardInterrupt):
                raise leaf from group
        raise


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    __tracebackhide__ = True
    if not _is_corral_test(pyfuncitem):
        return None
    _run_test(pyfuncitem)
    return True


def _is_corral_fixture(func: Callable[..., object], coerce: bool, kwargs: dict[str, object]) -> bool:
    if getattr(func, CORRAL_FIXTURE_FLAG, False):
        return True
    if coerce and (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)):
        return True
    return any(isinstance(value, _Node) for value in kwargs.values())


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: FixtureDef[Any], request: SubRequest) -> object | None:
    is_corral_test = _is_corral_test(request.node)
    coerce = is_corral_test or bool(request.config.getini("corral_mode"))
    kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}
    func = resolve_fixture_function(fixturedef, request)
    if not _is_corral_fixture(func, coerce, kwargs):
        return None
    if request.scope != "function":
        raise RuntimeError("corral fixtures must be function-scope")
    if not is_corral_test:
        raise RuntimeError("corral fixtures can only be used by corral tests")
    node = _Node(f"<fixture {fixturedef.argname!r}>", func, kwargs)
    # What pytest's own implementation of this hook would record.
    fixturedef.cached_result = (node, fixturedef.cache_key(request), None)
    return node


################################################################
# pytest-timeout
################################################################

# After the cooperative cancellation, how long the test gets to wind down
# before pytest-timeout's own handler raises wherever the code happens to be.
_TIMEOUT_GRACE = 5.0
# How many of the stuck main thread's innermost frames the fallback shows.
_STUCK_FRAMES = 25


@final
class _TimeoutBridge:
    """Turn pytest-timeout's SIGALRM into a clean failure of a corral test.

    pytest-timeout (``signal`` method) raises its failure from a signal
    handler, that is, at whatever point the main thread is: inside a
    corral test that is usually the run loop's wait for I/O, where an
    exception breaks the run itself instead of failing the test. While the
    run is active this bridge stands in for the handler: on the alarm it
    asks the run (through the run's token, which is signal-safe) to crash
    the test with pytest-timeout's own failure, which cancels the test and
    lets its fixtures tear down. If the run is still alive
    ``_TIMEOUT_GRACE`` seconds later (code that never reaches a
    checkpoint), pytest-timeout's handler runs after all.

    Both paths add to pytest-timeout's report (the stacks of the *other*
    threads) what a hang needs: where each of the run's tasks is suspended,
    or, in the fallback, the main thread's stack at the alarm. The
    fallback's failure is raised wherever the main thread is, possibly
    inside test code that catches it (``pytest.raises(BaseExceptionGroup)``
    around a nursery, say), so it is also recorded as an error of the test:
    the test fails with the timeout whatever the test code does with it.

    Inactive (a no-op) unless the alarm handler is pytest-timeout's, i.e.
    when pytest-timeout is absent, uses its ``thread`` method (which kills
    the process and needs no help), or the run is not in the main thread.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._previous: Callable[[int, FrameType | None], object] | None = None
        self._token: CorralToken | None = None
        self._state: _TestState | None = None
        self._test: _Node | None = None
        self._fired = False

    def __enter__(self) -> _TimeoutBridge:
        # No SIGALRM on Windows (pytest-timeout uses its thread method there).
        if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "SIGALRM"
        ):
            return self
        previous = signal.getsignal(signal.SIGALRM)
        # Only pytest-timeout's handler: anyone else's alarm is their own.
        if callable(previous) and getattr(previous, "__module__", None) == "pytest_timeout":
            self._previous = previous
            signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGALRM, self._previous)
        self._token = self._state = self._test = None

    def attach(self, token: CorralToken, state: _TestState, test: _Node) -> None:
        """Called from inside the run once it can be reached."""
        self._token, self._state, self._test = token, state, test

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        assert self._previous is not None
        token = self._token
        if self._fired or token is None:
            # The run could not be reached, or did not act in time: the
            # cooperative path stands down and pytest-timeout raises here.
            state, test = self._state, self._test
            self._state = self._test = None
            if frame is not None:
                # pytest-timeout shows every thread but this one, the one
                # that is stuck.
                self._write(
                    "main thread, stuck for the timeout plus the grace period",
                    "".join(traceback.format_stack(frame, limit=_STUCK_FRAMES)),
                )
            try:
                self._previous(signum, frame)
            except BaseException as failure:
                if state is not None and test is not None:
                    state.record(test, failure)
                raise
            return
        try:
            token.run_sync_soon(self._fail_test, signum)
        except RunFinishedError:
            # The run is over (we are between its end and our __exit__).
            self._state = self._test = None
            self._previous(signum, frame)
            return
        self._fired = True
        signal.setitimer(signal.ITIMER_REAL, _TIMEOUT_GRACE)

    def _fail_test(self, signum: int) -> None:
        # In the run thread, between task steps. pytest-timeout's handler
        # writes its report (thread stacks) and raises its failure; the
        # failure becomes the test's error. It returns without raising when
        # a debugger is active: then nothing happens.
        __tracebackhide__ = True
        assert self._previous is not None
        state, test = self._state, self._test
        if state is None or test is None:
            return
        self._write("corral tasks of the test, where each one waits", _task_stacks())
        try:
            self._previous(signum, None)
        except BaseException as failure:
            state.crash(test, failure)

    def _write(self, title: str, text: str) -> None:
        # Where pytest-timeout writes its report: the test's captured output.
        writer = self._config.get_terminal_writer()
        writer.sep("~", title=title)
        writer.write(text)


def _task_stacks() -> str:
    """The stack of every task of the current run, parents first (from
    inside the run, where all of them but the current one are suspended)."""
    parts: list[str] = []
    root = current_root_task()
    todo: list[Task] = [root] if root is not None else []
    while todo:
        task = todo.pop(0)
        frames = traceback.StackSummary.extract(task.iter_await_frames())
        parts.append(f"-- task {task.name}\n")
        parts.extend(frames.format())
        for nursery in task.child_nurseries:
            todo.extend(sorted(nursery.child_tasks, key=lambda child: str(child.name)))
    return "".join(parts)


################################################################
# Built-in fixtures
################################################################


@pytest.fixture
def mock_clock() -> MockClock:
    """A :class:`corral.testing.MockClock` (time stands still unless the
    test moves it); the test runs with it as its clock."""

    return MockClock()


@pytest.fixture
def autojump_clock() -> MockClock:
    """A :class:`corral.testing.MockClock` with ``autojump_threshold=0``: as
    soon as every task is blocked, time jumps to the next deadline, so
    sleeps and timeouts take no real time. The test runs with it."""

    return MockClock(autojump_threshold=0)


def _nursery(request: pytest.FixtureRequest) -> object:
    """A nursery belonging to the requesting test or fixture; it is cancelled
    when the test finishes (or the fixture is torn down), so background
    tasks started in it never outlive their user."""
    return _NURSERY


# A corral fixture (it only makes sense inside the run) whose users get
# their own nursery in place of its value.
setattr(_nursery, CORRAL_FIXTURE_FLAG, True)
setattr(_nursery, _NURSERY_FLAG, True)
nursery = pytest.fixture(name="nursery")(_nursery)
