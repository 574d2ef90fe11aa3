"""Windows error codes -> errno: the one place the Windows backends translate.

Every backend reports results in io_uring's convention (``res >= 0`` or
``-errno``) so that the layers above are identical on every platform. On
Windows a failure arrives in one of two vocabularies:

* an ``NTSTATUS`` in ``OVERLAPPED.Internal`` when a completion is dequeued
  (the I/O manager writes the IRP's final status there; the Win32 error is
  what ``RtlNtStatusToDosError`` makes of it, exactly what
  ``GetOverlappedResult`` would report);
* a Win32 or Winsock error code from ``GetLastError()`` when a call fails at
  once.

Both are mapped to the errno *names* POSIX would use for the same condition
(``WSAECONNRESET`` and ``ERROR_NETNAME_DELETED`` both become ``ECONNRESET``),
with the values Python's :mod:`errno` module has on this platform, so that
``exc.errno == errno.ECONNRESET`` holds on Windows as on Linux and ``OSError``
picks the same subclass (``ConnectionResetError``...). Codes without a POSIX
counterpart fall back to CPython's own table (the ``errno`` that
``OSError(..., winerror)`` would get), else ``EIO``. Messages are never
relied on (Wine has none for many codes).
"""

from __future__ import annotations

import errno
import sys
from typing import Any


def _e(name: str) -> int:
    # Python's errno module on Windows has every POSIX name used below (MSVC's
    # errno.h, or the Winsock value where MSVC has none).
    value: int = getattr(errno, name, errno.EIO)
    return value


#: Win32 and Winsock error codes -> errno (winerror.h, winsock2.h).
_TABLE: dict[int, int] = {
    # Win32
    2: _e("ENOENT"),  # ERROR_FILE_NOT_FOUND
    3: _e("ENOENT"),  # ERROR_PATH_NOT_FOUND
    5: _e("EACCES"),  # ERROR_ACCESS_DENIED
    6: _e("EBADF"),  # ERROR_INVALID_HANDLE
    8: _e("ENOMEM"),  # ERROR_NOT_ENOUGH_MEMORY
    14: _e("ENOMEM"),  # ERROR_OUTOFMEMORY
    50: _e("EOPNOTSUPP"),  # ERROR_NOT_SUPPORTED
    64: _e("ECONNRESET"),  # ERROR_NETNAME_DELETED: the peer reset the connection
    87: _e("EINVAL"),  # ERROR_INVALID_PARAMETER
    109: _e("EPIPE"),  # ERROR_BROKEN_PIPE
    121: _e("ETIMEDOUT"),  # ERROR_SEM_TIMEOUT
    232: _e("EPIPE"),  # ERROR_NO_DATA: the pipe is being closed
    233: _e("EPIPE"),  # ERROR_PIPE_NOT_CONNECTED
    234: _e("EMSGSIZE"),  # ERROR_MORE_DATA
    995: _e("ECANCELED"),  # ERROR_OPERATION_ABORTED: CancelIoEx (or the thread) cancelled it
    1225: _e("ECONNREFUSED"),  # ERROR_CONNECTION_REFUSED
    1226: _e("EPIPE"),  # ERROR_GRACEFUL_DISCONNECT
    1229: _e("ENOTCONN"),  # ERROR_CONNECTION_INVALID
    1231: _e("ENETUNREACH"),  # ERROR_NETWORK_UNREACHABLE
    1232: _e("EHOSTUNREACH"),  # ERROR_HOST_UNREACHABLE
    1234: _e("ECONNREFUSED"),  # ERROR_PORT_UNREACHABLE
    1236: _e("ECONNABORTED"),  # ERROR_CONNECTION_ABORTED
    1450: _e("ENOMEM"),  # ERROR_NO_SYSTEM_RESOURCES
    1460: _e("ETIMEDOUT"),  # ERROR_TIMEOUT
    1784: _e("EFAULT"),  # ERROR_INVALID_USER_BUFFER
    # Winsock: WSAExxx is 10000 + the BSD errno of the same name.
    10004: _e("EINTR"),
    10009: _e("EBADF"),
    10013: _e("EACCES"),
    10014: _e("EFAULT"),
    10022: _e("EINVAL"),
    10024: _e("EMFILE"),
    10035: _e("EAGAIN"),  # WSAEWOULDBLOCK (Linux: EAGAIN == EWOULDBLOCK)
    10036: _e("EINPROGRESS"),
    10037: _e("EALREADY"),
    10038: _e("ENOTSOCK"),
    10039: _e("EDESTADDRREQ"),
    10040: _e("EMSGSIZE"),
    10041: _e("EPROTOTYPE"),
    10042: _e("ENOPROTOOPT"),
    10043: _e("EPROTONOSUPPORT"),
    10045: _e("EOPNOTSUPP"),
    10047: _e("EAFNOSUPPORT"),
    10048: _e("EADDRINUSE"),
    10049: _e("EADDRNOTAVAIL"),
    10050: _e("ENETDOWN"),
    10051: _e("ENETUNREACH"),
    10052: _e("ENETRESET"),
    10053: _e("ECONNABORTED"),
    10054: _e("ECONNRESET"),
    # WSAENOBUFS is the kernel's "no buffer space"; reported as ENOMEM so that
    # it is never mistaken for the pool's ENOBUFS (which parks an op until a
    # pool buffer is released).
    10055: _e("ENOMEM"),
    10056: _e("EISCONN"),
    10057: _e("ENOTCONN"),
    10058: _e("EPIPE"),  # WSAESHUTDOWN: send after shutdown(SHUT_WR), EPIPE on Linux
    10060: _e("ETIMEDOUT"),
    10061: _e("ECONNREFUSED"),
    10063: _e("ENAMETOOLONG"),
    10064: _e("EHOSTDOWN"),
    10065: _e("EHOSTUNREACH"),
    10101: _e("EPIPE"),  # WSAEDISCON
}

_EIO = errno.EIO


def errno_from_winerror(code: int) -> int:
    """The (positive) errno for a Win32 or Winsock error code."""
    value = _TABLE.get(code)
    if value is not None:
        return value
    if sys.platform == "win32":
        # CPython's own mapping (PC/errmap.h), as OSError(None, msg, None,
        # winerror) applies it.
        mapped = OSError(None, "", None, code).errno
        if isinstance(mapped, int) and mapped > 0:
            return mapped
    return _EIO


class StatusMapper:
    """NTSTATUS -> errno through ``RtlNtStatusToDosError``, memoized (a run
    sees a handful of distinct statuses)."""

    def __init__(self, ntdll: Any) -> None:
        self._ntdll = ntdll
        self._cache: dict[int, int] = {}

    def winerror(self, status: int) -> int:
        """The Win32 error code for an NTSTATUS (``0`` for success)."""
        # The status arrives as an unsigned ULONG_PTR; RtlNtStatusToDosError
        # takes a signed 32-bit NTSTATUS.
        status &= 0xFFFFFFFF
        if status >= 0x80000000:
            status -= 1 << 32
        code: int = self._ntdll.RtlNtStatusToDosError(status)
        return code

    def errno(self, status: int) -> int:
        """The (positive) errno for a failed NTSTATUS."""
        value = self._cache.get(status)
        if value is None:
            value = errno_from_winerror(self.winerror(status))
            self._cache[status] = value
        return value
