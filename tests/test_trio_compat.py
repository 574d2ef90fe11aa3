"""Trio compatibility: the same program, run on trio and on corral, gives the
same results, the same exception types and the same messages (with corral's
name where Trio's says "trio").

Each scenario takes the library module (``trio`` or ``corral``), runs itself
with an autojumping MockClock (so time is deterministic) and returns a trace:
a list of strings describing what happened. The two traces must be equal.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable
from typing import Any

import pytest

trio = pytest.importorskip("trio")

import corral  # noqa: E402


def _trio_cannot_start() -> str | None:
    try:
        trio.run(trio.sleep, 0)
    except OSError as exc:  # Wine: trio's IOCP needs SIO_BSP_HANDLE_POLL
        return f"trio cannot start here: {exc!r}"
    return None


_TRIO_FAILS = _trio_cannot_start()
pytestmark = pytest.mark.skipif(_TRIO_FAILS is not None, reason=str(_TRIO_FAILS))

Scenario = Callable[[Any], Any]
SCENARIOS: list[Scenario] = []


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS.append(fn)
    return fn


def describe(exc: BaseException) -> str:
    """A library-neutral description of an exception (tree)."""
    if isinstance(exc, BaseExceptionGroup):
        # The order of a nursery's errors is unspecified (Trio shuffles
        # each batch of runnable tasks), so compare them sorted.
        inner = ", ".join(sorted(describe(e) for e in exc.exceptions))
        return f"{type(exc).__name__}[{inner}]"
    name = type(exc).__name__.replace("Trio", "Corral")
    return f"{name}({str(exc)!r})"


def normalize(text: str) -> str:
    text = text.replace("trio", "corral").replace("Trio", "Corral")
    return re.sub(r" at 0x[0-9a-f]+", " at 0x?", text)


def run_scenario(lib: Any, fn: Scenario) -> list[str]:
    importlib.import_module(lib.__name__ + ".testing")
    trace: list[str] = []

    async def main() -> None:
        await fn(lib, trace)

    try:
        lib.run(main, clock=lib.testing.MockClock(autojump_threshold=0))
    except BaseException as exc:
        trace.append("run raised " + describe(exc))
    return [normalize(line) for line in trace]


@scenario
async def nursery_child_error(lib: Any, trace: list[str]) -> None:
    async def boom() -> None:
        await lib.sleep(1)
        raise ValueError("boom")

    async def sleeper() -> None:
        try:
            await lib.sleep_forever()
        except lib.Cancelled as exc:
            trace.append(f"sleeper cancelled: {exc}")
            raise

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(boom)
            nursery.start_soon(sleeper)
    except BaseException as exc:
        trace.append("caught " + describe(exc))


@scenario
async def deadlines_and_shields(lib: Any, trace: list[str]) -> None:
    t0 = lib.current_time()
    with lib.move_on_after(5) as outer:
        trace.append(f"deadline set: {lib.current_effective_deadline() - t0}")
        with lib.CancelScope(shield=True) as inner:
            await lib.sleep(10)
            trace.append(f"shielded sleep done at {lib.current_time() - t0}")
            trace.append(f"effective deadline inside shield: {lib.current_effective_deadline()}")
        trace.append(f"inner caught: {inner.cancelled_caught}")
        await lib.sleep(1)
        trace.append("not reached")
    trace.append(f"outer caught: {outer.cancelled_caught}, at {lib.current_time() - t0}")
    trace.append(f"effective deadline outside: {lib.current_effective_deadline()}")
    with lib.CancelScope() as scope:
        scope.cancel(reason="because")
        try:
            await lib.lowlevel.checkpoint()
        except lib.Cancelled as exc:
            trace.append(f"cancelled: {exc}")
            raise
    trace.append(f"scope caught {scope.cancelled_caught}, called {scope.cancel_called}")


@scenario
async def fail_after_raises(lib: Any, trace: list[str]) -> None:
    try:
        with lib.fail_after(1):
            await lib.sleep(2)
    except lib.TooSlowError as exc:
        trace.append("TooSlowError " + describe(exc))
    with lib.fail_after(1):
        await lib.sleep(0.5)
    trace.append("finished in time")


@scenario
async def start_protocol(lib: Any, trace: list[str]) -> None:
    async def good(task_status: Any = lib.TASK_STATUS_IGNORED) -> None:
        await lib.sleep(1)
        task_status.started("value")
        await lib.sleep(1)
        trace.append("good child finished")

    async def fails_before_started(task_status: Any = lib.TASK_STATUS_IGNORED) -> None:
        raise KeyError("early")

    async def returns_without_started(task_status: Any = lib.TASK_STATUS_IGNORED) -> None:
        await lib.sleep(1)

    async with lib.open_nursery() as nursery:
        trace.append(f"started -> {await nursery.start(good)!r}")
        try:
            await nursery.start(fails_before_started)
        except BaseException as exc:
            trace.append("start raised " + describe(exc))
        try:
            await nursery.start(returns_without_started)
        except BaseException as exc:
            trace.append("start raised " + describe(exc))


@scenario
async def misuse_messages(lib: Any, trace: list[str]) -> None:
    async def noop() -> None:
        pass

    async with lib.open_nursery() as nursery:
        pass
    for attempt in (
        lambda: nursery.start_soon(noop),
        lambda: lib.CancelScope(deadline=math.nan),
        lambda: lib.CancelScope(relative_deadline=-1),
        lambda: lib.CancelScope(deadline=1, relative_deadline=1),
        lambda: lib.move_on_after(-1),
        lambda: lib.Semaphore(-1),
        lambda: lib.Semaphore(2, max_value=1),
        lambda: lib.CapacityLimiter(0),
        lambda: lib.open_memory_channel(-1),
        lambda: lib.open_memory_channel(1.5),
        lambda: lib.Cancelled(),
    ):
        try:
            attempt()
            trace.append("no error")
        except BaseException as exc:
            trace.append(describe(exc))
    for coro_fn in (lambda: lib.sleep(-1), lambda: lib.sleep_until(math.nan)):
        try:
            await coro_fn()
            trace.append("no error")
        except BaseException as exc:
            trace.append(describe(exc))
    scope = lib.CancelScope()
    with scope:
        pass
    try:
        with scope:
            pass
    except BaseException as exc:
        trace.append(describe(exc))
    lock = lib.Lock()
    try:
        lock.release()
    except BaseException as exc:
        trace.append(describe(exc))
    await lock.acquire()
    try:
        await lock.acquire()
    except BaseException as exc:
        trace.append(describe(exc))
    lock.release()


@scenario
async def channels(lib: Any, trace: list[str]) -> None:
    send, receive = lib.open_memory_channel(2)
    await send.send(1)
    send.send_nowait(2)
    try:
        send.send_nowait(3)
    except BaseException as exc:
        trace.append(describe(exc))
    trace.append(repr(send.statistics()).split("(", 1)[1])
    clone = send.clone()
    await send.aclose()
    trace.append(repr([await receive.receive(), receive.receive_nowait()]))
    try:
        receive.receive_nowait()
    except BaseException as exc:
        trace.append(describe(exc))
    await clone.aclose()
    try:
        await receive.receive()
    except BaseException as exc:
        trace.append(describe(exc))
    try:
        await send.send(4)
    except BaseException as exc:
        trace.append(describe(exc))
    await receive.aclose()
    s2, r2 = lib.open_memory_channel(0)
    await r2.aclose()
    try:
        await s2.send(1)
    except BaseException as exc:
        trace.append(describe(exc))


@scenario
async def sync_primitives(lib: Any, trace: list[str]) -> None:
    event = lib.Event()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await event.wait()
        order.append(i)

    lock = lib.Lock()

    async def locker(i: int) -> None:
        async with lock:
            order.append(100 + i)
            await lib.sleep(1)

    async with lib.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(waiter, i)
            await lib.testing.wait_all_tasks_blocked()
        trace.append(repr(event.statistics()).split("(", 1)[1])
        event.set()
        for i in range(3):
            nursery.start_soon(locker, i)
            await lib.testing.wait_all_tasks_blocked()
        trace.append(repr(lock.statistics()).split("(", 1)[1].split(",")[0])
    # Waking order of Event waiters is unspecified (Trio shuffles each batch);
    # a Lock hands off in FIFO order.
    trace.append(repr(sorted(order[:3]) + order[3:]))
    limiter = lib.CapacityLimiter(1)
    await limiter.acquire_on_behalf_of("a")
    try:
        limiter.acquire_on_behalf_of_nowait("a")
    except BaseException as exc:
        trace.append(describe(exc))
    trace.append(repr(limiter.statistics()).split("(", 1)[1])


@scenario
async def nested_groups(lib: Any, trace: list[str]) -> None:
    async def raiser(exc: BaseException) -> None:
        raise exc

    async def inner_nursery() -> None:
        async with lib.open_nursery() as n:
            n.start_soon(raiser, KeyError("a"))
            n.start_soon(raiser, IndexError("b"))

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(inner_nursery)
            nursery.start_soon(raiser, OSError(5, "io"))
    except BaseExceptionGroup as group:
        flat = sorted(describe(e) for e in group.exceptions)
        trace.append(f"{type(group).__name__} of {flat}")


@pytest.mark.parametrize("fn", SCENARIOS, ids=lambda f: f.__name__)
def test_same_trace_as_trio(fn: Scenario) -> None:
    expected = run_scenario(trio, fn)
    got = run_scenario(corral, fn)
    assert got == expected
