"""The Windows API surface corral's Windows backends use, in cffi ABI mode.

Windows Python cannot build C extensions here (no compiler), so everything
goes through ``cffi.FFI().dlopen``: the declarations below are copied from
the Windows SDK headers (``minwinbase.h``, ``ioapiset.h``, ``winsock2.h``,
``mswsock.h``) for 64-bit Windows, where ``long`` and ``DWORD`` are 32 bits
and pointers, ``ULONG_PTR`` and ``SOCKET`` are 64 bits. The undocumented
``\\Device\\Afd`` structures follow wepoll's ``afd.h`` and ReactOS's
``drivers/afd/shared.h``.

Nothing is loaded at import time: :func:`load` opens the DLLs once and
raises ``OSError(ENOSYS)`` on any other platform, so the backends can be
imported (and type-checked) everywhere.

Errors: cffi saves the thread's ``GetLastError()`` value after every call
through these libraries and restores it before the next one, so calling
``kernel32.GetLastError()`` right after a failed call returns that call's
error (Winsock's ``WSAGetLastError`` is the same value). ``ffi.getwinerror``
also works but formats a message each time, which the per-op path avoids.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import cffi  # type: ignore[import-untyped]  # cffi ships no type stubs

ffi = cffi.FFI()
ffi.cdef(
    """
    typedef int BOOL;
    typedef unsigned long DWORD;
    typedef unsigned long ULONG;
    typedef long LONG;
    typedef uintptr_t ULONG_PTR;
    typedef void *HANDLE;
    typedef uintptr_t SOCKET;

    typedef struct _OVERLAPPED {
        ULONG_PTR Internal;
        ULONG_PTR InternalHigh;
        union {
            struct {
                DWORD Offset;
                DWORD OffsetHigh;
            };
            void *Pointer;
        };
        HANDLE hEvent;
    } OVERLAPPED;

    typedef struct _OVERLAPPED_ENTRY {
        ULONG_PTR lpCompletionKey;
        OVERLAPPED *lpOverlapped;
        ULONG_PTR Internal;
        DWORD dwNumberOfBytesTransferred;
    } OVERLAPPED_ENTRY;

    /* corral's per-submission block: the OVERLAPPED the kernel writes, then
       the op's token, read back when the completion is dequeued. */
    typedef struct {
        OVERLAPPED ov;
        uint64_t token;
    } CORRAL_OVERLAPPED;

    typedef struct _WSABUF {
        ULONG len;
        char *buf;
    } WSABUF;

    typedef struct _GUID {
        unsigned long Data1;
        unsigned short Data2;
        unsigned short Data3;
        unsigned char Data4[8];
    } GUID;

    typedef struct _IO_STATUS_BLOCK {
        ULONG_PTR Status;
        ULONG_PTR Information;
    } IO_STATUS_BLOCK;

    typedef struct _FILE_COMPLETION_INFORMATION {
        HANDLE Port;
        void *Key;
    } FILE_COMPLETION_INFORMATION;

    typedef struct _AFD_POLL_HANDLE_INFO {
        HANDLE Handle;
        ULONG Events;
        LONG Status;
    } AFD_POLL_HANDLE_INFO;

    typedef struct _AFD_POLL_INFO {
        int64_t Timeout;
        ULONG NumberOfHandles;
        ULONG Exclusive;
        AFD_POLL_HANDLE_INFO Handles[1];
    } AFD_POLL_INFO;

    /* corral's per-poll block: the OVERLAPPED, the poll's token (where
       CORRAL_OVERLAPPED has it), and the poll-info block the AFD driver
       rewrites in place. */
    typedef struct {
        OVERLAPPED ov;
        uint64_t token;
        AFD_POLL_INFO info;
    } CORRAL_AFD_POLL;

    typedef BOOL (*LPFN_ACCEPTEX)(SOCKET, SOCKET, void *, DWORD, DWORD, DWORD,
                                  DWORD *, OVERLAPPED *);
    typedef BOOL (*LPFN_CONNECTEX)(SOCKET, const void *, int, void *, DWORD,
                                   DWORD *, OVERLAPPED *);

    /* kernel32 */
    DWORD GetLastError(void);
    HANDLE CreateIoCompletionPort(HANDLE, HANDLE, ULONG_PTR, DWORD);
    BOOL GetQueuedCompletionStatusEx(HANDLE, OVERLAPPED_ENTRY *, ULONG, ULONG *,
                                     DWORD, BOOL);
    BOOL PostQueuedCompletionStatus(HANDLE, DWORD, ULONG_PTR, OVERLAPPED *);
    BOOL CancelIoEx(HANDLE, OVERLAPPED *);
    BOOL CloseHandle(HANDLE);
    HANDLE CreateFileW(const wchar_t *, DWORD, DWORD, void *, DWORD, DWORD, HANDLE);
    BOOL DeviceIoControl(HANDLE, DWORD, void *, DWORD, void *, DWORD, DWORD *,
                         OVERLAPPED *);
    BOOL ReadFile(HANDLE, void *, DWORD, DWORD *, OVERLAPPED *);
    BOOL WriteFile(HANDLE, const void *, DWORD, DWORD *, OVERLAPPED *);
    BOOL SetFileCompletionNotificationModes(HANDLE, unsigned char);
    DWORD GetFileType(HANDLE);
    BOOL GetHandleInformation(HANDLE, DWORD *);
    BOOL SetHandleInformation(HANDLE, DWORD, DWORD);

    /* ntdll */
    ULONG RtlNtStatusToDosError(LONG);
    LONG NtSetInformationFile(HANDLE, IO_STATUS_BLOCK *, void *, ULONG, int);
    LONG NtQueryInformationFile(HANDLE, IO_STATUS_BLOCK *, void *, ULONG, int);

    /* ws2_32 */
    int WSARecv(SOCKET, WSABUF *, DWORD, DWORD *, DWORD *, OVERLAPPED *, void *);
    int WSASend(SOCKET, WSABUF *, DWORD, DWORD *, DWORD, OVERLAPPED *, void *);
    int WSARecvFrom(SOCKET, WSABUF *, DWORD, DWORD *, DWORD *, void *, int *,
                    OVERLAPPED *, void *);
    int WSASendTo(SOCKET, WSABUF *, DWORD, DWORD *, DWORD, const void *, int,
                  OVERLAPPED *, void *);
    int WSAIoctl(SOCKET, DWORD, void *, DWORD, void *, DWORD, DWORD *,
                 OVERLAPPED *, void *);
    SOCKET WSASocketW(int, int, int, void *, unsigned int, DWORD);
    int setsockopt(SOCKET, int, int, const void *, int);
    int getsockopt(SOCKET, int, int, void *, int *);
    int getsockname(SOCKET, void *, int *);
    int getpeername(SOCKET, void *, int *);
    int bind(SOCKET, const void *, int);
    int closesocket(SOCKET);
    int shutdown(SOCKET, int);
    int recv(SOCKET, void *, int, int);
    int send(SOCKET, const void *, int, int);
    int recvfrom(SOCKET, void *, int, int, void *, int *);
    int sendto(SOCKET, const void *, int, int, const void *, int);
    SOCKET accept(SOCKET, void *, int *);
    int connect(SOCKET, const void *, int);
    int ioctlsocket(SOCKET, unsigned long, unsigned long *);
    """
)

# -- constants (winerror.h, winbase.h, winsock2.h, mswsock.h, ntstatus.h) -----

INVALID_HANDLE_VALUE = (1 << 64) - 1
INVALID_SOCKET = (1 << 64) - 1
SOCKET_ERROR = -1
INFINITE = 0xFFFFFFFF

ERROR_SUCCESS = 0
ERROR_INVALID_HANDLE = 6
ERROR_HANDLE_EOF = 38
ERROR_NETNAME_DELETED = 64
ERROR_INVALID_PARAMETER = 87
ERROR_BROKEN_PIPE = 109
ERROR_MORE_DATA = 234
WAIT_TIMEOUT = 258
ERROR_OPERATION_ABORTED = 995
ERROR_IO_INCOMPLETE = 996
ERROR_IO_PENDING = 997
ERROR_NOT_FOUND = 1168
ERROR_CONNECTION_REFUSED = 1225
ERROR_NETWORK_UNREACHABLE = 1231
ERROR_HOST_UNREACHABLE = 1232
ERROR_PORT_UNREACHABLE = 1234
ERROR_CONNECTION_ABORTED = 1236
WSAEWOULDBLOCK = 10035
WSAENOTSOCK = 10038
WSAEMSGSIZE = 10040
WSAEOPNOTSUPP = 10045
WSAEINVAL = 10022

STATUS_SUCCESS = 0
STATUS_PENDING = 0x103
STATUS_BUFFER_OVERFLOW = 0x80000005
STATUS_CANCELLED = 0xC0000120

GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
SYNCHRONIZE = 0x00100000
FILE_SHARE_READ = 1
FILE_SHARE_WRITE = 2
OPEN_EXISTING = 3
FILE_FLAG_OVERLAPPED = 0x40000000
FILE_TYPE_DISK = 1
FILE_TYPE_CHAR = 2
FILE_TYPE_PIPE = 3
FILE_SKIP_SET_EVENT_ON_HANDLE = 0x2
HANDLE_FLAG_INHERIT = 0x1

# NtQueryInformationFile / NtSetInformationFile classes (wdm.h / ntifs.h).
FileModeInformation = 16
FileReplaceCompletionInformation = 61
FILE_SYNCHRONOUS_IO_ALERT = 0x10
FILE_SYNCHRONOUS_IO_NONALERT = 0x20

SOL_SOCKET = 0xFFFF
SO_TYPE = 0x1008
SO_UPDATE_ACCEPT_CONTEXT = 0x700B
SO_UPDATE_CONNECT_CONTEXT = 0x7010
WSA_FLAG_OVERLAPPED = 0x01
WSA_FLAG_NO_HANDLE_INHERIT = 0x80
FIONBIO = 0x8004667E
FIONREAD = 0x4004667F
MSG_PARTIAL = 0x8000

SIO_GET_EXTENSION_FUNCTION_POINTER = 0xC8000006
SIO_BASE_HANDLE = 0x48000022
SIO_BSP_HANDLE_SELECT = 0x4800001C
SIO_BSP_HANDLE_POLL = 0x4800001D

IOCTL_AFD_POLL = 0x00012024

#: Room AcceptEx needs for each address: sizeof(sockaddr_storage) + 16
#: (AcceptEx docs: "at least 16 bytes more than the maximum address length").
ACCEPTEX_ADDRESS_LEN = 128 + 16

# GUIDs of the Winsock extension functions (mswsock.h).
WSAID_ACCEPTEX = (0xB5367DF1, 0xCBAC, 0x11CF, (0x95, 0xCA, 0x00, 0x80, 0x5F, 0x48, 0xA1, 0x92))
WSAID_CONNECTEX = (0x25A207B9, 0xDDF3, 0x4660, (0x8E, 0xE9, 0x76, 0xE5, 0x8C, 0x74, 0x06, 0x3E))


class Libraries:
    """The loaded DLLs (cffi library objects)."""

    def __init__(self) -> None:
        self.kernel32: Any = ffi.dlopen("kernel32.dll")
        self.ntdll: Any = ffi.dlopen("ntdll.dll")
        self.ws2_32: Any = ffi.dlopen("ws2_32.dll")


_libs: Libraries | None = None


def load() -> Libraries:
    """Open kernel32, ntdll and ws2_32 (once per process).

    Raises:
      OSError: ``ENOSYS`` when not on Windows; the loader's error if a DLL
        cannot be opened.
    """
    global _libs
    if _libs is None:
        if sys.platform != "win32":
            raise OSError(errno.ENOSYS, "the Windows backends need Windows")
        # Winsock must be initialised (WSAStartup) before any ws2_32 call;
        # importing the stdlib socket module does that for the process.
        import socket  # noqa: F401

        _libs = Libraries()
    return _libs


def guid(fields: tuple[int, int, int, tuple[int, ...]]) -> Any:
    """A ``GUID *`` for one of the ``WSAID_*`` tuples above."""
    g = ffi.new("GUID *")
    g.Data1, g.Data2, g.Data3 = fields[0], fields[1], fields[2]
    for i, byte in enumerate(fields[3]):
        g.Data4[i] = byte
    return g


def address(cdata: Any) -> int:
    """A pointer's value as an int."""
    return int(ffi.cast("uintptr_t", cdata))
