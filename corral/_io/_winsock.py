"""Winsock and handle helpers shared by the Windows backends.

* :class:`Associator`: attach a handle to the run's completion port.
* :class:`SocketHelpers`: the Winsock calls around the overlapped ones
  (extension-function pointers, accept sockets, base handles, non-blocking
  mode, sockaddrs).

Facts used here:

* ``CreateIoCompletionPort(handle, port, key, 0)`` associates a handle with a
  port, once. On a handle that is already associated (with this port or any
  other) it fails with ``ERROR_INVALID_PARAMETER``. A handle value is reused
  by Windows as soon as the handle is closed, so "this value was associated
  earlier in the run" proves nothing about the object it names now: the
  association is attempted for every issued op (one cheap system call), and
  ``ERROR_INVALID_PARAMETER`` on a handle this run associated means "ours".
  A handle associated by an *earlier* run (a socket that outlived its run)
  is moved to this run's port with ``NtSetInformationFile(...,
  FileReplaceCompletionInformation)`` (Windows 8.1+); where that is
  unavailable the op fails with ``EINVAL`` rather than wait forever on a
  port nobody reads.
* ``AcceptEx`` and ``ConnectEx`` are not exported by ws2_32: their addresses
  come from ``WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)`` with the GUIDs
  of mswsock.h (per provider; every TCP/IP socket shares Microsoft's).
* An accepted or connected socket is not fully set up until
  ``SO_UPDATE_ACCEPT_CONTEXT`` / ``SO_UPDATE_CONNECT_CONTEXT`` is set on it;
  before that ``getpeername``/``shutdown`` fail (AcceptEx and ConnectEx
  docs).
* ``SIO_BASE_HANDLE`` returns the base service provider's socket under any
  layered providers; AFD polls must name that one. Some layered providers
  (Komodia) intercept it; ``SIO_BSP_HANDLE_POLL`` then digs one layer
  further. Wine implements ``SIO_BASE_HANDLE`` and fails the ``SIO_BSP_*``
  ioctls with ``WSAEOPNOTSUPP``.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from . import _windows_ffi as w
from ._sockaddr import decode_sockaddr
from ._winerrors import errno_from_winerror

_ffi = w.ffi
_U16 = struct.Struct("<H")


class Associator:
    """Associates handles with one completion port under one key."""

    def __init__(self, libs: w.Libraries, port: Any, key: int) -> None:
        self._k32 = libs.kernel32
        self._ntdll = libs.ntdll
        self._port = port
        self._key = key
        #: Handle values associated by this run (see the module docstring for
        #: why this is only a hint).
        self._mine: set[int] = set()
        self.replaced = 0

    def associate(self, handle: int) -> int:
        """Make sure ``handle`` reports to this port. Returns ``0`` or
        ``-errno`` (``-EBADF`` for a closed handle)."""
        h = _ffi.cast("HANDLE", handle)
        if self._k32.CreateIoCompletionPort(h, self._port, self._key, 0) != _ffi.NULL:
            self._mine.add(handle)
            return 0
        code = self._k32.GetLastError()
        if code != w.ERROR_INVALID_PARAMETER:
            return -errno_from_winerror(code)
        if handle in self._mine:
            return 0
        # Associated with another port (an earlier run's): move it here.
        info = _ffi.new("FILE_COMPLETION_INFORMATION *")
        info.Port = self._port
        info.Key = _ffi.cast("void *", self._key)
        iosb = _ffi.new("IO_STATUS_BLOCK *")
        status = self._ntdll.NtSetInformationFile(
            h, iosb, info, _ffi.sizeof("FILE_COMPLETION_INFORMATION"),
            w.FileReplaceCompletionInformation,
        )  # fmt: skip
        if status != 0:
            return -errno_from_winerror(w.ERROR_INVALID_PARAMETER)
        self.replaced += 1
        self._mine.add(handle)
        return 0


class SocketHelpers:
    """Winsock calls the backends need besides the overlapped ones."""

    def __init__(self, libs: w.Libraries) -> None:
        self._ws2 = libs.ws2_32
        self._k32 = libs.kernel32
        self._fns: dict[tuple[int, str], Any] = {}

    def last_errno(self) -> int:
        """``-errno`` for the calling thread's last Winsock/Win32 error."""
        return -errno_from_winerror(self._k32.GetLastError())

    def extension(self, sock: int, name: str) -> Any:
        """The ``AcceptEx``/``ConnectEx`` pointer for ``sock``'s provider, or
        an ``int`` ``-errno``."""
        family = self.family(sock)
        key = (family, name)
        fn = self._fns.get(key)
        if fn is not None:
            return fn
        ident, ctype = {
            "AcceptEx": (w.WSAID_ACCEPTEX, "LPFN_ACCEPTEX"),
            "ConnectEx": (w.WSAID_CONNECTEX, "LPFN_CONNECTEX"),
        }[name]
        guid = w.guid(ident)
        out = _ffi.new(f"{ctype} *")
        nbytes = _ffi.new("DWORD *")
        rc = self._ws2.WSAIoctl(
            sock, w.SIO_GET_EXTENSION_FUNCTION_POINTER, guid, _ffi.sizeof("GUID"),
            out, _ffi.sizeof(ctype), nbytes, _ffi.NULL, _ffi.NULL,
        )  # fmt: skip
        if rc != 0:
            return self.last_errno()
        fn = out[0]
        self._fns[key] = fn
        return fn

    def sockname(self, sock: int) -> bytes | int:
        """The raw local sockaddr of ``sock``, or ``-errno`` (``-EINVAL``
        when unbound)."""
        buf = _ffi.new("char[]", 128)
        size = _ffi.new("int *", 128)
        if self._ws2.getsockname(sock, buf, size) != 0:
            return self.last_errno()
        return bytes(_ffi.buffer(buf, size[0]))

    def peer_address(self, sock: int) -> object:
        """``sock``'s peer as ``socket.getpeername`` gives it (what
        ``AcceptOp.peer_address`` reports), or ``None`` if it has none."""
        buf = _ffi.new("char[]", 128)
        size = _ffi.new("int *", 128)
        if self._ws2.getpeername(sock, buf, size) != 0:
            return None
        return decode_sockaddr(bytes(_ffi.buffer(buf, size[0])))

    def family(self, sock: int) -> int:
        """``sock``'s address family (0 if it cannot be found)."""
        name = self.sockname(sock)
        if isinstance(name, int) or len(name) < 2:
            return 0
        family: int = _U16.unpack_from(name)[0]
        return family

    def socket_type(self, sock: int) -> int:
        """``SO_TYPE`` of ``sock``, or ``-errno`` (``-ENOTSOCK`` for a handle
        that is not a socket)."""
        value = _ffi.new("int *")
        size = _ffi.new("int *", _ffi.sizeof("int"))
        if self._ws2.getsockopt(sock, w.SOL_SOCKET, w.SO_TYPE, value, size) != 0:
            return self.last_errno()
        result: int = value[0]
        return result

    def set_nonblocking(self, sock: int) -> int:
        """Put ``sock`` in non-blocking mode; ``0`` or ``-errno``."""
        arg = _ffi.new("unsigned long *", 1)
        if self._ws2.ioctlsocket(sock, w.FIONBIO, arg) != 0:
            return self.last_errno()
        return 0

    def new_socket(self, family: int, type_: int) -> int:
        """A new overlapped, non-inheritable socket, or ``-errno``."""
        s = self._ws2.WSASocketW(
            family, type_, 0, _ffi.NULL, 0, w.WSA_FLAG_OVERLAPPED | w.WSA_FLAG_NO_HANDLE_INHERIT
        )
        if s == w.INVALID_SOCKET:
            return self.last_errno()
        return int(s)

    def close_socket(self, sock: int) -> None:
        """``closesocket``, errors ignored (cleanup paths)."""
        self._ws2.closesocket(sock)

    def setsockopt_socket(self, sock: int, option: int, value: int | None) -> int:
        """``setsockopt(sock, SOL_SOCKET, option, &value)`` where ``value``
        is a SOCKET (or no value); ``0`` or ``-errno``."""
        if value is None:
            rc = self._ws2.setsockopt(sock, w.SOL_SOCKET, option, _ffi.NULL, 0)
        else:
            arg = _ffi.new("SOCKET *", value)
            rc = self._ws2.setsockopt(sock, w.SOL_SOCKET, option, arg, _ffi.sizeof("SOCKET"))
        if rc != 0:
            return self.last_errno()
        return 0

    def bind_wildcard(self, sock: int, family: int) -> int:
        """Bind ``sock`` to the wildcard address of ``family``, port 0
        (``ConnectEx`` needs a bound socket); ``0`` or ``-errno``."""
        import socket as _socket

        if family == _socket.AF_INET6:
            addr = _U16.pack(family) + b"\0" * 26
        else:
            addr = _U16.pack(family) + b"\0" * 14
        buf = _ffi.from_buffer(addr)
        if self._ws2.bind(sock, buf, len(addr)) != 0:
            return self.last_errno()
        return 0

    def handle_errno(self, handle: int, res: int) -> int:
        """Refine a Winsock ``-ENOTSOCK`` into ``-EBADF`` when ``handle`` is
        not an open handle at all (Winsock says WSAENOTSOCK for both; POSIX
        callers expect EBADF for a closed fd)."""
        if res != -errno.ENOTSOCK:
            return res
        flags = _ffi.new("DWORD *")
        if not self._k32.GetHandleInformation(_ffi.cast("HANDLE", handle), flags):
            return -errno.EBADF
        return res

    def base_handle(self, sock: int) -> int:
        """The base provider's socket under ``sock`` (for AFD polls), or
        ``-errno``. Tries ``SIO_BASE_HANDLE``, then ``SIO_BSP_HANDLE_POLL``
        (see the module docstring)."""
        first = self._ioctl_handle(sock, w.SIO_BASE_HANDLE)
        if first >= 0:
            return first
        current = sock
        for _ in range(16):
            nxt = self._ioctl_handle(current, w.SIO_BSP_HANDLE_POLL)
            if nxt < 0 or nxt == current:
                break
            current = nxt
            base = self._ioctl_handle(current, w.SIO_BASE_HANDLE)
            if base >= 0:
                return base
        if current != sock:
            return current
        return first

    def _ioctl_handle(self, sock: int, code: int) -> int:
        out = _ffi.new("SOCKET *")
        nbytes = _ffi.new("DWORD *")
        rc = self._ws2.WSAIoctl(
            sock, code, _ffi.NULL, 0, out, _ffi.sizeof("SOCKET"), nbytes, _ffi.NULL, _ffi.NULL
        )
        if rc != 0:
            return self.last_errno()
        return int(out[0])
