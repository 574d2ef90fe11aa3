"""The per-op fast paths keep the slow paths' behaviour.

The hot op records inline ``Operation.__init__`` and their input checks,
``perform`` inlines the scheduler's helpers, and backends resume tasks with
a shared ``RESUMED`` outcome; these tests pin down that nothing observable
changed.
"""

from __future__ import annotations

import array
import socket
from typing import Any

import pytest
from iohelpers import REAL_BACKENDS, run_on

import corral
from corral._io._backend import RESUMED
from corral._io.ops import (
    NEW,
    Operation,
    PollOp,
    ReadOp,
    RecvMultishotOp,
    RecvOp,
    RecvPoolOp,
    SendOp,
    WriteOp,
)
from corral._io.perform import cancel_operation, current_backend, perform

_BASE_FIELDS = [name for name in Operation.__slots__]


def _reference_fields() -> dict[str, Any]:
    ref: Any = object.__new__(NopRecord)
    Operation.__init__(ref)
    return {name: getattr(ref, name) for name in _BASE_FIELDS}


class NopRecord(Operation):
    __slots__ = ()


@pytest.mark.parametrize(
    "make",
    [
        lambda: SendOp(3, b"x"),
        lambda: RecvOp(3, bytearray(4)),
        lambda: RecvPoolOp(3),
        lambda: ReadOp(3, bytearray(4)),
        lambda: WriteOp(3, b"x", 5),
        lambda: PollOp(3, 1),
    ],
)
def test_inlined_constructors_set_every_base_field(make: Any) -> None:
    op = make()
    assert {name: getattr(op, name) for name in _BASE_FIELDS} == _reference_fields()
    assert op._state == NEW
    assert op.fd == 3


class _Fd:
    def __index__(self) -> int:
        return 4


def test_inlined_constructors_keep_their_checks() -> None:
    with pytest.raises(ValueError, match=r"^fd must be a non-negative file descriptor, not -1$"):
        SendOp(-1, b"x")
    with pytest.raises(TypeError, match=r"^fd must be an int, not str$"):
        RecvPoolOp("3")  # type: ignore[arg-type]
    assert RecvOp(_Fd(), bytearray(1)).fd == 4  # type: ignore[arg-type]
    assert SendOp(True, b"x").fd == 1  # an index, as before
    with pytest.raises(TypeError, match=r"^a writable bytes-like object is required"):
        RecvOp(3, b"read-only")
    with pytest.raises(TypeError, match=r"^a bytes-like object is required, not 'str'$"):
        SendOp(3, "text")
    with pytest.raises(ValueError, match=r"^offset must be >= 0, or -1"):
        ReadOp(3, bytearray(1), -2)
    with pytest.raises(TypeError, match=r"^'str' object cannot be interpreted as an integer$"):
        SendOp(3, b"x", "0")  # type: ignore[arg-type]


def test_buffers_are_pinned_flat_bytes() -> None:
    data = bytearray(b"abcd")
    op = RecvOp(3, data)
    with pytest.raises(BufferError):
        data.extend(b"more")  # pinned: cannot be resized while the op lives
    assert op.buffer.format == "B" and len(op.buffer) == 4
    words = array.array("I", [1, 2])
    assert len(SendOp(3, words).buffer) == 8  # cast to bytes, as pin() does


def test_resumed_is_a_reusable_value_of_none() -> None:
    assert RESUMED.unwrap() is None
    assert RESUMED.unwrap() is None  # unlike outcome.Value, reusable

    def gen() -> Any:
        got = yield
        yield got

    g = gen()
    next(g)
    assert RESUMED.send(g) is None


async def test_perform_returns_after_resumption() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        assert await perform(SendOp(a.fileno(), b"ping")) == 4
        buf = bytearray(8)
        assert await perform(RecvOp(b.fileno(), buf)) == 4
        assert buf[:4] == b"ping"


def test_perform_outside_a_run() -> None:
    coro = perform(RecvPoolOp(0))
    with pytest.raises(RuntimeError, match=r"^must be called from async context$"):
        coro.send(None)


def test_perform_in_a_run_without_backend() -> None:
    async def main() -> None:
        await perform(RecvPoolOp(0))

    with pytest.raises(RuntimeError, match=r"^this corral run has no completion backend"):
        corral._core.run(main)


def test_a_busy_task_does_not_delay_completions_by_a_turn() -> None:
    # Another task that is always runnable makes every loop turn a
    # non-blocking one. The receive woken by a send submitted in that turn
    # must still complete in the same io_uring_enter (GETEVENTS runs the
    # kernel's deferred task work): 2 enters per round trip, not 4.
    if "io_uring" not in REAL_BACKENDS:
        pytest.skip("io_uring unavailable here (a Linux kernel interface)")
    rounds = 200

    async def main() -> float:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        done = False

        async def spinner() -> None:
            while not done:
                await corral.lowlevel.checkpoint()

        async def echo() -> None:
            buf = bytearray(8)
            for _ in range(rounds):
                n = await perform(RecvOp(b.fileno(), buf))
                await perform(SendOp(b.fileno(), buf[:n]))

        async with corral.open_nursery() as nursery:
            nursery.start_soon(spinner)
            nursery.start_soon(echo)
            await corral.lowlevel.checkpoint()
            before = current_backend().statistics().kernel_waits
            buf = bytearray(8)
            for _ in range(rounds):
                await perform(SendOp(a.fileno(), b"x"))
                await perform(RecvOp(a.fileno(), buf))
            enters = current_backend().statistics().kernel_waits - before
            done = True
        a.close()
        b.close()
        return enters / rounds

    assert run_on("io_uring", main) <= 2.1


def test_multishot_waiter_cancelled_keeps_the_stream() -> None:
    if "io_uring" not in REAL_BACKENDS:
        pytest.skip("io_uring unavailable here (a Linux kernel interface)")

    async def main() -> list[bytes]:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        op = RecvMultishotOp(b.fileno())
        got = []
        with corral.move_on_after(0.01) as scope:
            await perform(op)  # nothing arrives: cancelled while parked
        assert scope.cancelled_caught
        assert op.in_flight  # the kernel op keeps running
        a.send(b"after")
        lease = await perform(op)
        got.append(bytes(lease.data))
        lease.release()
        cancel_operation(op)
        with pytest.raises(corral.EndOfChannel):
            while True:
                (await perform(op)).release()
        a.close()
        b.close()
        return got

    assert run_on("io_uring", main) == [b"after"]


def test_multishot_outside_a_run() -> None:
    coro = perform(RecvMultishotOp(0))
    with pytest.raises(RuntimeError, match=r"^must be called from async context$"):
        coro.send(None)


def test_io_wakeups_use_the_runners_lean_reschedule(backend: str) -> None:
    # A task woken by a completion goes through Runner.reschedule_io, which
    # still tells instruments and leaves the task as reschedule() would.
    from corral._core._run_context import GLOBAL_RUN_CONTEXT
    from corral._io.ops import NopOp

    scheduled: list[Any] = []

    class Recorder(corral.abc.Instrument):
        def task_scheduled(self, task: Any) -> None:
            scheduled.append(task)

    async def main() -> None:
        task = corral.lowlevel.current_task()
        task.custom_sleep_data = "stale"
        corral.lowlevel.add_instrument(Recorder())
        assert await perform(NopOp()) is None
        runner = GLOBAL_RUN_CONTEXT.runner
        assert current_backend()._reschedule == runner.reschedule_io
        assert task in scheduled
        assert task.custom_sleep_data is None
        assert task._abort_func is None

    run_on(backend, main)
