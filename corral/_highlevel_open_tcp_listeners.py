"""open_tcp_listeners and serve_tcp: listening TCP sockets as
:class:`corral.SocketListener` objects, and a server loop over them."""

from __future__ import annotations

import errno
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

from . import socket as csocket
from ._core import TASK_STATUS_IGNORED, TaskStatus
from ._highlevel_serve_listeners import _StartSoon, serve_listeners
from ._highlevel_socket import SocketListener, SocketStream

__all__ = ["open_tcp_listeners", "serve_tcp"]

# The listen backlog.
#
# A connection waiting in the backlog looks established to the peer, whose
# sends then stall until we accept; a connection that finds the backlog full
# has its SYN dropped and retried, which stalls its connect instead. Either
# way the peer waits, so a small backlog buys no backpressure, only failures
# under a burst of connections to a healthy server. Hence: as large as the
# system allows. listen(2) silently caps the value at net.core.somaxconn
# (Linux; other systems have the same kind of cap), so asking for "a lot" is
# the portable way to get the maximum. Not more than 0xFFFF though: several
# kernels keep the value in 16 bits without checking for overflow, so a
# larger one can wrap around to a tiny backlog.
_MAX_BACKLOG = 0xFFFF


def _compute_backlog(backlog: int | None) -> int:
    if backlog is None:
        return _MAX_BACKLOG
    # bool is an int; Trio accepts it too. Floats are refused rather than
    # truncated.
    if not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, not {backlog!r}")
    return min(backlog, _MAX_BACKLOG)


async def open_tcp_listeners(
    port: int, *, host: str | bytes | None = None, backlog: int | None = None
) -> list[SocketListener]:
    """Open TCP listening sockets on ``port``, one per local address
    ``host`` resolves to, as :class:`corral.SocketListener` objects.

    Args:
      port: the port. ``0`` lets the kernel pick a free port, separately
        for each listener: with several addresses (the default ``host``
        gives two) the listeners usually end up on different ports; read
        each one's from ``listener.socket.getsockname()``.
      host: the local address to bind, resolved with ``AI_PASSIVE``.
        ``None`` (the default) means every interface, on IPv4 (``0.0.0.0``)
        and IPv6 (``::``) both; ``"0.0.0.0"`` or ``"::"`` only one of them.
        A name that resolves to several addresses gets one listener each.
      backlog: the listen backlog; ``None`` (the default) asks for the
        largest the system allows. Values above 65535 are capped there.

    Every socket gets ``SO_REUSEADDR`` (except on Windows, where it means
    something else), so a restarted server can bind a port whose old
    connections linger in TIME_WAIT; IPv6 sockets get ``IPV6_V6ONLY``, so an
    IPv6 wildcard listener does not collide with the IPv4 one.

    Address families the system lacks (``EAFNOSUPPORT`` creating the socket)
    are skipped as long as one listener could be opened.

    Returns:
      A list of :class:`corral.SocketListener`, owned by the caller.

    Raises:
      TypeError: ``port`` is not an int; ``backlog`` is not an int or None.
      OSError: resolution or bind failed (``EADDRINUSE``...), or no address
        family was supported (``EAFNOSUPPORT``; ``__cause__`` is an
        :class:`ExceptionGroup` of the per-family errors). Sockets already
        opened are closed first.
    """
    # getaddrinfo would accept None, a service name or "" here, with
    # different meanings on different systems: refuse them all.
    if not isinstance(port, int):
        raise TypeError(f"port must be an int not {port!r}")
    computed_backlog = _compute_backlog(backlog)

    addresses = await csocket.getaddrinfo(
        host, port, type=csocket.SOCK_STREAM, flags=csocket.AI_PASSIVE
    )

    listeners: list[SocketListener] = []
    unsupported: list[OSError] = []
    try:
        for family, type_, proto, _, sockaddr in addresses:
            try:
                sock = csocket.socket(family, type_, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT:
                    # An IPv4-only (or IPv6-only) system still gets both
                    # wildcard addresses from getaddrinfo.
                    unsupported.append(exc)
                    continue
                raise
            try:
                if sys.platform != "win32":
                    sock.setsockopt(csocket.SOL_SOCKET, csocket.SO_REUSEADDR, 1)
                if family == csocket.AF_INET6:
                    sock.setsockopt(csocket.IPPROTO_IPV6, csocket.IPV6_V6ONLY, 1)
                await sock.bind(sockaddr)
                sock.listen(computed_backlog)
                listeners.append(SocketListener(sock))
            except BaseException:
                sock.close()
                raise
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise

    if unsupported and not listeners:
        msg = "This system doesn't support any of the kinds of socket that that address could use"
        raise OSError(errno.EAFNOSUPPORT, msg) from ExceptionGroup(msg, unsupported)
    return listeners


async def serve_tcp(
    handler: Callable[[SocketStream], Awaitable[object]],
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handler_nursery: _StartSoon | None = None,
    max_connections: int | None = None,
    task_status: TaskStatus[list[SocketListener]] = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Listen for TCP connections on ``port`` and run ``handler(stream)`` in
    a new task for each one: :func:`open_tcp_listeners` then
    :func:`corral.serve_listeners`. Never returns; stop it by cancelling it.

    With ``nursery.start`` it returns the listeners once they accept, so a
    test can bind port 0 and connect to whatever port was picked::

        listeners = await nursery.start(corral.serve_tcp, handler, 0)
        client = await corral.testing.open_stream_to_socket_listener(listeners[0])

    Args:
      handler: ``async def handler(stream: corral.SocketStream)``. Its
        stream is closed when it returns. An exception it raises is not
        caught: with the default nursery it stops the server.
      port, host, backlog: as :func:`open_tcp_listeners`.
      handler_nursery: where handler tasks run (a nursery, or anything with
        ``start_soon``); ``None`` uses serve_listeners' own, so cancelling
        the server cancels the handlers too.
      max_connections: corral extension: at most this many handlers run at
        once; past that, connections wait in the kernel's backlog instead
        of being accepted (see :func:`corral.serve_listeners`).
      task_status: for ``nursery.start``.

    Resource exhaustion while accepting (``EMFILE``, ``ENFILE``, ``ENOBUFS``,
    ``ENOMEM``) does not stop the server: it is logged on the
    ``corral.serve_listeners`` logger and accept is retried after a short
    sleep. Cancelling the server closes the listeners (new connections are
    refused) and cancels the handlers in the default nursery.

    Raises:
      As :func:`open_tcp_listeners` while starting; then whatever ``accept``
      raises besides the exhaustion errors above, and what handlers raise.
    """
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    await serve_listeners(
        handler,
        listeners,
        handler_nursery=handler_nursery,
        max_connections=max_connections,
        task_status=task_status,
    )
