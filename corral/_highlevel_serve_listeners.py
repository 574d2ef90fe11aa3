"""serve_listeners: accept connections from any Listeners and run a handler
task per connection, surviving resource exhaustion (EMFILE and friends)."""

from __future__ import annotations

import errno
import logging
import operator
import os
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, Protocol, TypeVar

from ._abc import AsyncResource, Listener
from ._core import TASK_STATUS_IGNORED, TaskStatus, open_nursery
from ._highlevel_generic import aclose_forcefully
from ._sync import CapacityLimiter
from ._timeouts import sleep

__all__ = ["serve_listeners"]

# accept(2) errors that mean "the system is short of resources right now",
# not "this listener is broken": out of fds for the process (EMFILE) or the
# system (ENFILE), or out of kernel memory (ENOMEM, ENOBUFS). The listening
# socket is fine and the connection stays queued in the backlog, so backing
# off and retrying is the right response; crashing the server is not.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})

# How long the accept loop waits after one of those errors before retrying.
# Long enough not to spin on a full fd table, short enough that service
# resumes quickly once handlers finish and free their fds.
SLEEP_TIME = 0.100

LOGGER = logging.getLogger("corral.serve_listeners")

StreamT = TypeVar("StreamT", bound=AsyncResource)
ListenerT = TypeVar("ListenerT", bound=Listener[Any])
Handler = Callable[[StreamT], Awaitable[object]]


class _StartSoon(Protocol):
    # What serve_listeners needs of a handler nursery: Trio accepts "any
    # object with a start_soon method".
    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: Any) -> None: ...


async def _run_handler(
    stream: StreamT,
    handler: Handler[StreamT],
    limiter: CapacityLimiter | None,
    token: object,
) -> None:
    try:
        await handler(stream)
    finally:
        try:
            # The handler may have left the stream open; close it without
            # blocking, so a slow peer cannot keep a finished handler alive.
            await aclose_forcefully(stream)
        finally:
            if limiter is not None:
                limiter.release_on_behalf_of(token)


async def _serve_one_listener(
    listener: Listener[StreamT],
    handler_nursery: _StartSoon,
    handler: Handler[StreamT],
    limiter: CapacityLimiter | None,
) -> NoReturn:
    async with listener:
        while True:
            # With a connection limit, wait for a free slot *before*
            # accepting: connections then wait in the kernel's backlog
            # (backpressure) instead of being accepted and dropped.
            token = object()
            if limiter is not None:
                await limiter.acquire_on_behalf_of(token)
            try:
                stream = await listener.accept()
            except BaseException as exc:
                if limiter is not None:
                    limiter.release_on_behalf_of(token)
                if isinstance(exc, OSError) and exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    LOGGER.error(
                        "accept returned %s (%s); retrying in %s seconds",
                        errno.errorcode[exc.errno],
                        os.strerror(exc.errno),
                        SLEEP_TIME,
                        exc_info=True,
                    )
                    await sleep(SLEEP_TIME)
                    continue
                raise
            handler_nursery.start_soon(_run_handler, stream, handler, limiter, token)


async def serve_listeners(
    handler: Handler[StreamT],
    listeners: list[ListenerT],
    *,
    handler_nursery: _StartSoon | None = None,
    max_connections: int | None = None,
    task_status: TaskStatus[list[ListenerT]] = TASK_STATUS_IGNORED,
) -> NoReturn:
    r"""Accept connections on every listener in ``listeners`` and run
    ``handler(stream)`` in a new task for each one. Never returns; stop it by
    cancelling it.

    Args:
      handler: an async function called as
          ``handler_nursery.start_soon(handler, stream)`` per connection.
      listeners: :class:`corral.abc.Listener` objects. serve_listeners owns
          them from now on and closes them when it exits.
      handler_nursery: where handler tasks run: a nursery, or any object
          with a ``start_soon`` method. ``None`` (the default) uses a nursery
          of serve_listeners' own, so cancelling serve_listeners also
          cancels the handlers.
      max_connections: corral extension, keyword-only, default ``None``
          (no limit, Trio's behaviour). At most this many handlers run at a
          time, counted over all the listeners. When the limit is reached
          serve_listeners stops calling ``accept`` until a handler finishes:
          new connections wait in the kernel's listen backlog (backpressure)
          rather than being accepted and closed. Must be a positive int.
      task_status: for ``nursery.start(serve_listeners, ...)``, which
          returns ``listeners`` once every accept loop is running.

    Handlers: if ``handler`` raises, the exception is not caught; with the
    default nursery it crashes the server. Catch errors inside the handler,
    or pass a ``handler_nursery`` that deals with them. Whatever the handler
    does, its ``stream`` is closed with :func:`corral.aclose_forcefully`
    when it returns.

    Errors from ``accept`` propagate (and stop the server), except the ones
    that mean the machine is temporarily out of resources: :exc:`OSError`
    with errno ``EMFILE`` (process out of file descriptors), ``ENFILE``
    (system out of file descriptors), ``ENOBUFS`` or ``ENOMEM`` (kernel out
    of memory). On those, serve_listeners logs the error at level ERROR, with
    the traceback, on the standard-library logger ``corral.serve_listeners``,
    sleeps 100 ms and calls ``accept`` again.

    Raises:
      ValueError: ``max_connections`` is less than 1.
      TypeError: ``max_connections`` is not an int.
    """
    limiter: CapacityLimiter | None = None
    if max_connections is not None:
        max_connections = operator.index(max_connections)
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        limiter = CapacityLimiter(max_connections)
    async with open_nursery() as nursery:
        target: _StartSoon = nursery if handler_nursery is None else handler_nursery
        for listener in listeners:
            nursery.start_soon(_serve_one_listener, listener, target, handler, limiter)
        # The listeners already queue connections in the kernel; reporting
        # "started" only now means an error while starting the loops is
        # raised from nursery.start rather than after it returned.
        task_status.started(listeners)
    raise AssertionError("_serve_one_listener never returns")  # pragma: no cover
