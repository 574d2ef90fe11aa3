"""open_stream_to_socket_listener: a client for a listener in the same
program (tests of servers)."""

from __future__ import annotations

from .. import socket as csocket
from .._highlevel_socket import SocketListener, SocketStream

__all__ = ["open_stream_to_socket_listener"]


async def open_stream_to_socket_listener(socket_listener: SocketListener) -> SocketStream:
    """Connect to ``socket_listener`` and return the client's stream.

    Made for tests that let the kernel pick a port::

        listeners = await corral.open_tcp_listeners(0)
        client = await corral.testing.open_stream_to_socket_listener(listeners[0])

    A listener bound to a wildcard address is reached through the loopback
    address of its family (``127.0.0.1`` for ``0.0.0.0``, ``::1`` for
    ``::``). Unix-socket listeners are reached at their path.

    Cancellation: as :meth:`corral.socket.SocketType.connect` (the client
    socket is closed).

    Raises:
      OSError: the connection failed.
    """
    family = socket_listener.socket.family
    sockaddr = socket_listener.socket.getsockname()
    if family in (csocket.AF_INET, csocket.AF_INET6):
        fields = list(sockaddr)
        if fields[0] == "0.0.0.0":
            fields[0] = "127.0.0.1"
        if fields[0] == "::":
            fields[0] = "::1"
        sockaddr = tuple(fields)
    sock = csocket.socket(family=family)
    try:
        await sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return SocketStream(sock)
