"""open_unix_socket: a :class:`corral.SocketStream` connected to a Unix
domain socket."""

from __future__ import annotations

import os

from . import socket as csocket
from ._highlevel_socket import SocketStream

__all__ = ["open_unix_socket"]

#: Whether this platform has Unix domain sockets (Windows Python has no
#: ``AF_UNIX`` constant).
has_unix = hasattr(csocket, "AF_UNIX")


async def open_unix_socket(
    filename: str | bytes | os.PathLike[str] | os.PathLike[bytes],
) -> SocketStream:
    """Connect to the Unix domain socket at ``filename`` (a path; on Linux a
    ``bytes`` name starting with a NUL byte is an abstract-namespace name).
    Needs read and write permission on the socket file.

    Cancellation: the half-made socket is closed and ``Cancelled`` raised.

    Returns:
      A :class:`corral.SocketStream` connected to the listener.

    Raises:
      OSError: the connection failed (``ENOENT``: no such file,
        ``ECONNREFUSED``: nobody listens there, ``EACCES``...).
      TypeError: ``filename`` is not a path.
      RuntimeError: the platform has no Unix sockets.
    """
    if not has_unix:
        raise RuntimeError("Unix sockets are not supported on this platform")
    # fspath first: a bad argument fails before any socket exists.
    path = os.fspath(filename)
    sock = csocket.socket(csocket.AF_UNIX, csocket.SOCK_STREAM)
    try:
        await sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return SocketStream(sock)
