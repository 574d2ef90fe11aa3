"""wait_readable / wait_writable / notify_closing on every real backend."""

from __future__ import annotations

import errno
import socket

import pytest
from iohelpers import run_on

from corral._core import (
    BusyResourceError,
    CancelScope,
    ClosedResourceError,
    open_nursery,
    wait_all_tasks_blocked,
)
from corral._io.readiness import notify_closing, wait_readable, wait_writable


def test_wait_readable_and_writable(real_backend: str) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            await wait_writable(a)
            woke: list[str] = []
            async with open_nursery() as nursery:

                async def reader() -> None:
                    await wait_readable(b.fileno())
                    woke.append("readable")

                nursery.start_soon(reader)
                await wait_all_tasks_blocked()
                assert woke == []
                a.send(b"x")
            assert woke == ["readable"]

    run_on(real_backend, main)


def test_busy_cancel_and_notify_closing(real_backend: str) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            async with open_nursery() as nursery:
                nursery.start_soon(wait_readable, b)
                await wait_all_tasks_blocked()
                with pytest.raises(
                    BusyResourceError, match=r"^another task is already reading / writing this fd$"
                ):
                    await wait_readable(b)

                async def closed() -> None:
                    with pytest.raises(ClosedResourceError, match=r"^another task closed this fd$"):
                        await wait_readable(b)

                nursery.cancel_scope.cancel()
            # A cancelled wait leaves at once and frees the slot.
            async with open_nursery() as nursery:
                nursery.start_soon(closed)
                await wait_all_tasks_blocked()
                notify_closing(b)
            with CancelScope() as cs:
                cs.cancel()
                await wait_readable(b)
            assert cs.cancelled_caught

    run_on(real_backend, main)


def test_wait_readable_on_closed_fd(real_backend: str) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        fd = b.fileno()
        a.close()
        b.close()
        with pytest.raises(OSError) as info:
            with CancelScope() as cs:
                cs.deadline = float("inf")
                await wait_readable(fd)
        assert info.value.errno == errno.EBADF

    run_on(real_backend, main)
