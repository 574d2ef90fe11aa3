"""``wait_readable`` / ``wait_writable`` / ``notify_closing`` on every backend.

Trio's readiness API, built on :class:`~corral._io.ops.PollOp` (a one-shot
IORING_OP_POLL_ADD on io_uring) so it works the same on every backend.

A poll op is the one kind of op whose waiter may leave before its terminal
completion: it gives the kernel no memory to write into (only an fd and an
event mask travel in the SQE; io_uring_prep_poll_add(3)). So cancelling a
wait, or ``notify_closing``, releases the task at once and orphans the poll
op: its cancellation is requested and its completion, when it comes, is
dropped. The op still gets exactly one terminal completion.
"""

from __future__ import annotations

import select
from typing import Any, Protocol

import outcome

from .._core import (
    Abort,
    BusyResourceError,
    ClosedResourceError,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)
from ._backend import Backend
from .ops import PollOp, raise_errno
from .perform import current_backend

# Windows Python's select module has no poll(); PollOp takes Linux's bit
# values everywhere (corral/_io/_winafd.py reports in them).
_POLLIN: int = getattr(select, "POLLIN", 0x001)
_POLLOUT: int = getattr(select, "POLLOUT", 0x004)


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def _fileno(fd: int | _HasFileno) -> int:
    if isinstance(fd, int):
        return fd
    fileno = getattr(fd, "fileno", None)
    if fileno is None:
        raise TypeError(f"expected an int fd or an object with fileno(), not {type(fd).__name__}")
    value = fileno()
    if not isinstance(value, int):
        raise TypeError("fileno() must return an int")
    return value


def _registry(backend: Backend) -> dict[int, list[Any]]:
    reg: dict[int, list[Any]] | None = getattr(backend, "_readiness", None)
    if reg is None:
        reg = {}
        backend._readiness = reg  # type: ignore[attr-defined]  # per-run table kept on the backend
    return reg


async def _wait(fd: int | _HasFileno, direction: int, events: int) -> None:
    fileno = _fileno(fd)
    await checkpoint_if_cancelled()
    backend = current_backend()
    reg = _registry(backend)
    waiters = reg.get(fileno)
    if waiters is None:
        waiters = reg[fileno] = [None, None]
    if waiters[direction] is not None:
        raise BusyResourceError("another task is already reading / writing this fd")
    op = PollOp(fileno, events)
    backend.submit(op)
    op._task = current_task()
    waiters[direction] = op

    def abort(_: Any) -> Abort:
        op._task = None
        _forget(reg, fileno, direction, op)
        backend.cancel(op)
        return Abort.SUCCEEDED

    try:
        await wait_task_rescheduled(abort)
    finally:
        _forget(reg, fileno, direction, op)
    if op.res < 0:
        raise_errno(op.res)


def _forget(reg: dict[int, list[Any]], fd: int, direction: int, op: PollOp) -> None:
    waiters = reg.get(fd)
    if waiters is not None and waiters[direction] is op:
        waiters[direction] = None
        if waiters[0] is None and waiters[1] is None:
            del reg[fd]


async def wait_readable(fd: int | _HasFileno) -> None:
    """Block until the kernel reports ``fd`` readable (or in error, or hung
    up), like Trio's :func:`trio.lowlevel.wait_readable`.

    Raises:
      corral.BusyResourceError: another task is already waiting to read
        ``fd``.
      corral.ClosedResourceError: :func:`notify_closing` was called for
        ``fd`` while waiting.
      OSError: the kernel refused to watch ``fd`` (``EBADF`` for a closed
        fd).

    Cancellation releases the task at once (a readiness wait owns no memory
    the kernel could write).
    """
    await _wait(fd, 0, _POLLIN)


async def wait_writable(fd: int | _HasFileno) -> None:
    """Block until ``fd`` is writable; otherwise like :func:`wait_readable`."""
    await _wait(fd, 1, _POLLOUT)


def notify_closing(fd: int | _HasFileno) -> None:
    """Wake every :func:`wait_readable` / :func:`wait_writable` on ``fd``
    with :exc:`corral.ClosedResourceError` ("another task closed this fd").

    Call it before closing ``fd``. It does not close anything, and it does
    not touch other ops on ``fd`` (sockets cancel their own ops).
    """
    fileno = _fileno(fd)
    backend = current_backend()
    waiters = _registry(backend).pop(fileno, None)
    if waiters is None:
        return
    for op in waiters:
        if op is None:
            continue
        task = op._task
        op._task = None
        backend.cancel(op)
        if task is not None:
            reschedule(task, outcome.Error(ClosedResourceError("another task closed this fd")))
