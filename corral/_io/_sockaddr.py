"""Encode Python socket addresses into the kernel's ``struct sockaddr`` bytes,
and decode them back.

io_uring's connect/sendmsg take a pointer to a ``sockaddr`` (and accept and
recvmsg fill one); the stdlib only builds and reads those inside its own
socket methods. The layouts below are the Linux
uapi ones (``<netinet/in.h>``, ``<sys/un.h>``); ports and IPv4 addresses are
in network byte order, the family in host byte order.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

_NATIVE_U16 = "<H" if sys.byteorder == "little" else ">H"
_FAMILY = struct.Struct(_NATIVE_U16)
_IN6_PORT_FLOWINFO = struct.Struct("!HI")
_SCOPE_ID = struct.Struct("=I")


def encode_sockaddr(family: int, address: object) -> bytes:
    """Return the ``struct sockaddr_*`` bytes for ``address`` in ``family``.

    Raises:
      TypeError: the address has the wrong shape for the family.
      ValueError: a field is out of range, or the family is unsupported.
      OSError: a host is not a numeric address (resolve names first; the
        completion core never does DNS).
    """
    fam = struct.pack(_NATIVE_U16, family)
    if family == socket.AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise TypeError(f"AF_INET address must be a (host, port) tuple, not {address!r}")
        host, port = address
        packed = socket.inet_pton(socket.AF_INET, _host(host))
        return fam + struct.pack("!H", _port(port)) + packed + b"\0" * 8
    if family == socket.AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise TypeError(
                f"AF_INET6 address must be a (host, port[, flowinfo[, scope_id]]) tuple, not {address!r}"
            )
        host, port, flowinfo, scope_id = (*address, 0, 0)[:4]
        packed = socket.inet_pton(socket.AF_INET6, _host(host))
        return (
            fam + struct.pack("!HI", _port(port), flowinfo) + packed + struct.pack("=I", scope_id)
        )
    if family == socket.AF_UNIX:
        if isinstance(address, str):
            path = address.encode(sys.getfilesystemencoding(), "surrogateescape")
        elif isinstance(address, (bytes, bytearray)):
            path = bytes(address)
        else:
            raise TypeError(f"AF_UNIX address must be str or bytes, not {type(address).__name__}")
        if len(path) > 107 or (len(path) == 107 and not path.startswith(b"\0")):
            raise ValueError("AF_UNIX path too long")
        # Abstract addresses (leading NUL) are length-delimited, not
        # NUL-terminated (unix(7)), so the exact length matters.
        if path.startswith(b"\0"):
            return fam + path
        return fam + path + b"\0"
    raise ValueError(f"unsupported address family {family!r}")


def _host(host: object) -> str:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    return host


def _port(port: object) -> int:
    if not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0-65535, not {port}")
    return port


def decode_sockaddr(raw: bytes) -> object:
    """Return the Python address the standard library would build from the
    ``struct sockaddr`` bytes ``raw`` (exactly the length the kernel
    reported): ``None`` for no address; ``(host, port)`` for AF_INET;
    ``(host, port, flowinfo, scope_id)`` for AF_INET6; for AF_UNIX a ``str``
    path (``""`` for an unnamed socket) or ``bytes`` for an abstract name
    (leading NUL, length-delimited: unix(7)); the raw bytes for any other
    family."""
    if len(raw) < 2:
        return None
    family = _FAMILY.unpack_from(raw)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        port = int.from_bytes(raw[2:4], "big")
        return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if family == socket.AF_INET6 and len(raw) >= 24:
        port, flowinfo = _IN6_PORT_FLOWINFO.unpack_from(raw, 2)
        scope_id = _SCOPE_ID.unpack_from(raw, 24)[0] if len(raw) >= 28 else 0
        return (socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flowinfo, scope_id)
    if family == socket.AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return bytes(path)
        # A pathname is NUL-terminated within the reported length (the
        # kernel may or may not count the terminator).
        return os.fsdecode(path.split(b"\0", 1)[0])
    return bytes(raw)
