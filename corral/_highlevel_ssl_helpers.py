"""TLS over TCP in one call: open_ssl_over_tcp_stream,
open_ssl_over_tcp_listeners and serve_ssl_over_tcp (open_tcp_stream /
open_tcp_listeners / serve_tcp, wrapped in :class:`corral.SSLStream` /
:class:`corral.SSLListener`)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import NoReturn

from ._core import TASK_STATUS_IGNORED, TaskStatus
from ._highlevel_open_tcp_listeners import open_tcp_listeners
from ._highlevel_open_tcp_stream import DEFAULT_DELAY, open_tcp_stream
from ._highlevel_serve_listeners import _StartSoon, serve_listeners
from ._highlevel_socket import SocketStream
from ._ssl import SSLListener, SSLStream

__all__ = ["open_ssl_over_tcp_listeners", "open_ssl_over_tcp_stream", "serve_ssl_over_tcp"]


async def open_ssl_over_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    https_compatible: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
) -> SSLStream[SocketStream]:
    """Connect to ``host``:``port`` over TCP (:func:`corral.open_tcp_stream`)
    and wrap the connection in a client-side :class:`corral.SSLStream`
    whose certificate check expects ``host``.

    The TLS handshake is not done here: it happens on the stream's first
    send or receive, or with :meth:`corral.SSLStream.do_handshake`.

    Args:
      host: the server's name or address; its certificate must be valid
        for it.
      port: the port.
      https_compatible: see :class:`corral.SSLStream` (for web servers).
      ssl_context: the client context; ``None`` means
        :func:`ssl.create_default_context`, with
        ``OP_IGNORE_UNEXPECTED_EOF`` cleared where Python sets it, so that
        a truncated stream is reported rather than taken for a clean end.
      happy_eyeballs_delay: see :func:`corral.open_tcp_stream`.

    Cancellation: as :func:`corral.open_tcp_stream` (no socket is left
    open).

    Raises:
      As :func:`corral.open_tcp_stream`.
    """
    tcp_stream = await open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    if ssl_context is None:
        ssl_context = ssl.create_default_context()
        if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
            ssl_context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return SSLStream(
        tcp_stream, ssl_context, server_hostname=host, https_compatible=https_compatible
    )


async def open_ssl_over_tcp_listeners(
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
) -> list[SSLListener[SocketStream]]:
    """Open TCP listeners (:func:`corral.open_tcp_listeners`) whose
    connections are TLS: each is wrapped in a :class:`corral.SSLListener`.

    Args:
      port, host, backlog: as :func:`corral.open_tcp_listeners`.
      ssl_context: the server context for every connection.
      https_compatible: see :class:`corral.SSLStream`.

    Raises:
      As :func:`corral.open_tcp_listeners`.
    """
    tcp_listeners = await open_tcp_listeners(port, host=host, backlog=backlog)
    return [
        SSLListener(listener, ssl_context, https_compatible=https_compatible)
        for listener in tcp_listeners
    ]


async def serve_ssl_over_tcp(
    handler: Callable[[SSLStream[SocketStream]], Awaitable[object]],
    port: int,
    ssl_context: ssl.SSLContext,
    *,
    host: str | bytes | None = None,
    https_compatible: bool = False,
    backlog: int | None = None,
    handler_nursery: _StartSoon | None = None,
    max_connections: int | None = None,
    task_status: TaskStatus[list[SSLListener[SocketStream]]] = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve TLS over TCP: :func:`open_ssl_over_tcp_listeners`, then
    :func:`corral.serve_listeners`, running ``handler(stream)`` in a new
    task for each connection (an :class:`corral.SSLStream`, handshake not
    yet done). Never returns; stop it by cancelling it.

    With ``nursery.start`` it returns the listeners once they accept (see
    :func:`corral.serve_tcp` for the pattern).

    Args:
      handler: ``async def handler(stream)``. Its stream is closed when it
        returns. An exception it raises is not caught: with the default
        nursery it stops the server.
      port, host, backlog: as :func:`corral.open_tcp_listeners`.
      ssl_context, https_compatible: as :func:`open_ssl_over_tcp_listeners`.
      handler_nursery, max_connections: as :func:`corral.serve_tcp`
        (``max_connections`` is a corral extension).
      task_status: for ``nursery.start``.

    Resource exhaustion while accepting (``EMFILE``...) is logged and
    retried, and cancelling closes the listeners, as in
    :func:`corral.serve_tcp`. A client that fails its handshake only breaks
    its own stream (the handler sees :exc:`corral.BrokenResourceError`).
    """
    listeners = await open_ssl_over_tcp_listeners(
        port, ssl_context, host=host, https_compatible=https_compatible, backlog=backlog
    )
    await serve_listeners(
        handler,
        listeners,
        handler_nursery=handler_nursery,
        max_connections=max_connections,
        task_status=task_status,
    )
