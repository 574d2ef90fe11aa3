"""The lowest layer of the io_uring backend: one ``Ring`` over the C extension.

``Ring`` knows nothing about tasks, ops or the scheduler. It owns one
io_uring instance (SQ, CQ, a wakeup eventfd) and offers exactly the calls the
backend needs per operation and per loop turn, each a single Python->C call:

- ``ring.prep(opcode, fd, addr, length, off, op_flags, user_data, sqe_flags,
  ioprio, buf_index, file_index, addr3) -> int`` fills one SQE (all twelve
  arguments positional; ``prep_op`` is the keyword form). Returns ``0``,
  ``SQ_FULL`` (nothing written: call ``submit()`` and retry; never dropped),
  or ``-errno`` (``-EBADF`` closed ring, ``-EINVAL`` reserved user_data).
  Arguments outside their C type (negative length, user_data >= 2**64, ...)
  raise ``OverflowError`` before anything is written.
- Short forms of ``prep`` for the per-op hot path (same result codes, every
  other SQE field zero; fewer arguments for cffi to convert):
  ``ring.prep_simple(opcode, fd, addr, length, off, op_flags, user_data)``,
  ``ring.prep_buf(opcode, fd, buf, length, off, op_flags, user_data)`` with
  ``buf`` a pointer (``ffi.from_buffer(obj)`` or ``bytes``; ``length == 0``
  sends address 0), and ``ring.prep_select(opcode, fd, length, off,
  op_flags, user_data, ioprio, bgid)`` for IOSQE_BUFFER_SELECT requests.
- ``ring.submit_and_wait(wait_nr, timeout) -> n`` flushes the SQ and waits in
  ONE ``io_uring_enter`` (EXT_ARG timeout), handles EINTR / EBUSY / EAGAIN /
  CQ overflow, and reaps up to ``batch`` CQEs into
  ``ring.cqe_user_data[:n]`` (``array('Q')``), ``ring.cqe_res[:n]``
  (``array('i')``) and ``ring.cqe_flags[:n]`` (``array('I')``).
- ``ring.turn(wait_nr, timeout_ns) -> n or -errno``: ``submit_and_wait``
  as one bare C call (timeout in ns, -1 for none; errors returned), for
  the backend's loop turn.
- ``ring.reap() -> n`` does the same without a syscall.
- ``ring.wakeup()`` makes a blocked ``submit_and_wait`` return; safe from any
  thread.
- ``ring.register_buf_ring(bgid, slab, buf_size, nbufs) -> BufRing``: a
  provided-buffer ring over a caller's page-aligned slab; ``BufRing.add(bid)``
  gives a buffer (back) to the kernel.

Every CQE the caller sees carries its ``user_data`` unchanged. Values from
``RESERVED_USER_DATA`` (2**64 - 16) up belong to the ring itself (its wakeup
poll, legacy buffer provision); ``prep`` refuses them and their CQEs are
consumed inside C, never reported.

Threads: a ``Ring`` is not thread-safe; only ``wakeup()`` may be called
concurrently (from any thread, or a signal handler). With ``single_issuer``
(the default) the kernel additionally requires every submit and wait to come
from the thread that created the ring (``IORING_SETUP_SINGLE_ISSUER``:
``-EEXIST`` otherwise; ``IORING_SETUP_DEFER_TASKRUN``: completions are only
posted when that thread enters with GETEVENTS -- io_uring_setup(2)). Guest
mode, which waits in a worker thread, must pass ``single_issuer=False``.
Even then, io_uring cancels a thread's pending requests when the thread
exits (the kernel's exit-time cancellation of the task's requests), so the
thread that calls ``submit``/``submit_and_wait`` must outlive the requests it
submitted: use one long-lived thread, not a recycled pool thread.

Closing does not wait for in-flight requests: cancel and reap until nothing
is in flight first; the memory those requests reference (buffers, the slab of
a ``BufRing``) must stay alive until their terminal CQE.

When the extension is missing (not Linux, or built with
``CORRAL_BUILD_URING=0``) this module still imports; ``unavailable_reason()``
says why and ``Ring(...)`` raises ``OSError(ENOSYS)``.
"""

from __future__ import annotations

import array
import enum
import errno
import functools
import importlib
import os
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final

import attrs

_ffi: Any = None
_lib: Any = None
_import_error: str | None = None
try:
    _mod = importlib.import_module("corral._io._uring_cffi")
except ImportError as _exc:
    _import_error = f"the io_uring extension corral._io._uring_cffi is not available ({_exc})"
else:
    _ffi, _lib = _mod.ffi, _mod.lib

#: ``Ring.prep`` result: the SQ has no free entry; flush and retry.
SQ_FULL: Final = 1
#: user_data values >= this belong to the ring itself (see module docstring).
RESERVED_USER_DATA: Final = 2**64 - 16
#: Environment variable that makes ``Ring()`` fail as a refusing kernel would:
#: an errno name ("EPERM", "ENOSYS") or number. For fallback tests.
REFUSE_ENV: Final = "CORRAL_IO_URING_REFUSE"


class Op(enum.IntEnum):
    """io_uring opcodes (``enum io_uring_op``; values are kernel ABI)."""

    NOP = 0
    READV = 1
    WRITEV = 2
    FSYNC = 3
    READ_FIXED = 4
    WRITE_FIXED = 5
    POLL_ADD = 6
    POLL_REMOVE = 7
    SYNC_FILE_RANGE = 8
    SENDMSG = 9
    RECVMSG = 10
    TIMEOUT = 11
    TIMEOUT_REMOVE = 12
    ACCEPT = 13
    ASYNC_CANCEL = 14
    LINK_TIMEOUT = 15
    CONNECT = 16
    FALLOCATE = 17
    OPENAT = 18
    CLOSE = 19
    FILES_UPDATE = 20
    STATX = 21
    READ = 22
    WRITE = 23
    FADVISE = 24
    MADVISE = 25
    SEND = 26
    RECV = 27
    OPENAT2 = 28
    EPOLL_CTL = 29
    SPLICE = 30
    PROVIDE_BUFFERS = 31
    REMOVE_BUFFERS = 32
    TEE = 33
    SHUTDOWN = 34
    RENAMEAT = 35
    UNLINKAT = 36
    MKDIRAT = 37
    SYMLINKAT = 38
    LINKAT = 39
    MSG_RING = 40
    FSETXATTR = 41
    SETXATTR = 42
    FGETXATTR = 43
    GETXATTR = 44
    SOCKET = 45
    URING_CMD = 46
    SEND_ZC = 47
    SENDMSG_ZC = 48
    READ_MULTISHOT = 49
    WAITID = 50
    FUTEX_WAIT = 51
    FUTEX_WAKE = 52
    FUTEX_WAITV = 53
    FIXED_FD_INSTALL = 54
    FTRUNCATE = 55
    BIND = 56
    LISTEN = 57


class SqeFlag(enum.IntFlag):
    """``sqe->flags`` (IOSQE_*)."""

    FIXED_FILE = 1 << 0
    IO_DRAIN = 1 << 1
    IO_LINK = 1 << 2
    IO_HARDLINK = 1 << 3
    ASYNC = 1 << 4
    BUFFER_SELECT = 1 << 5
    CQE_SKIP_SUCCESS = 1 << 6


class CqeFlag(enum.IntFlag):
    """``cqe->flags`` (IORING_CQE_F_*); the buffer id sits above bit 16."""

    BUFFER = 1 << 0
    MORE = 1 << 1
    SOCK_NONEMPTY = 1 << 2
    NOTIF = 1 << 3


#: cqe->flags >> CQE_BUFFER_SHIFT is the buffer id when CqeFlag.BUFFER is set.
CQE_BUFFER_SHIFT: Final = 16


class SetupFlag(enum.IntFlag):
    """``io_uring_params.flags`` (IORING_SETUP_*)."""

    IOPOLL = 1 << 0
    SQPOLL = 1 << 1
    SQ_AFF = 1 << 2
    CQSIZE = 1 << 3
    CLAMP = 1 << 4
    ATTACH_WQ = 1 << 5
    R_DISABLED = 1 << 6
    SUBMIT_ALL = 1 << 7
    COOP_TASKRUN = 1 << 8
    TASKRUN_FLAG = 1 << 9
    SQE128 = 1 << 10
    CQE32 = 1 << 11
    SINGLE_ISSUER = 1 << 12
    DEFER_TASKRUN = 1 << 13


class Feature(enum.IntFlag):
    """``io_uring_params.features`` (IORING_FEAT_*)."""

    SINGLE_MMAP = 1 << 0
    NODROP = 1 << 1
    SUBMIT_STABLE = 1 << 2
    RW_CUR_POS = 1 << 3
    CUR_PERSONALITY = 1 << 4
    FAST_POLL = 1 << 5
    POLL_32BITS = 1 << 6
    SQPOLL_NONFIXED = 1 << 7
    EXT_ARG = 1 << 8
    NATIVE_WORKERS = 1 << 9
    RSRC_TAGS = 1 << 10
    CQE_SKIP = 1 << 11
    LINKED_FILE = 1 << 12
    REG_REG_RING = 1 << 13
    RECVSEND_BUNDLE = 1 << 14
    MIN_TIMEOUT = 1 << 15
    RW_ATTR = 1 << 16
    NO_IOWAIT = 1 << 17


# Op-specific flags (the value passed as ``op_flags`` or ``ioprio``).
TIMEOUT_ABS: Final = 1 << 0  # op_flags of TIMEOUT
TIMEOUT_ETIME_SUCCESS: Final = 1 << 5  # op_flags of TIMEOUT
POLL_ADD_MULTI: Final = 1 << 0  # *length* of POLL_ADD
# ASYNC_CANCEL (addr = target user_data; io_uring_prep_cancel(3)): the
# cancel's own CQE says 0 (found and cancelled), -ENOENT (not found: already
# completed, or not submitted yet -- SQEs are issued in order, so a target
# prepared before the cancel, even in the same batch, is found unless it
# has already completed), -EALREADY
# (running, cannot be stopped; its completion follows shortly) or, with
# ASYNC_CANCEL_ALL/FD/ANY, the number cancelled. The target still posts its
# own CQE in every case: -ECANCELED when cancelled, else its real result.
# A successful cancel has posted the target's CQE by the time the cancel's
# submission returns.
ASYNC_CANCEL_ALL: Final = 1 << 0  # op_flags of ASYNC_CANCEL
ASYNC_CANCEL_FD: Final = 1 << 1
ASYNC_CANCEL_ANY: Final = 1 << 2
RECVSEND_POLL_FIRST: Final = 1 << 0  # ioprio of SEND/RECV/SENDMSG/RECVMSG
RECV_MULTISHOT: Final = 1 << 1  # ioprio of RECV/RECVMSG
ACCEPT_MULTISHOT: Final = 1 << 0  # ioprio of ACCEPT
FSYNC_DATASYNC: Final = 1 << 0  # op_flags of FSYNC
FILE_INDEX_ALLOC: Final = 2**32 - 1  # file_index: let the kernel pick a slot

# Which setup flags to try, best first. Each tier that the kernel refuses
# with EINVAL (io_uring_setup(2): "p.flags contains an unsupported flag")
# falls through to the next.
# - SINGLE_ISSUER (6.0) + DEFER_TASKRUN (6.1): completions are posted only
#   when the one submitter thread enters with GETEVENTS, which is exactly our
#   one-enter-per-turn loop; TASKRUN_FLAG makes the kernel raise
#   IORING_SQ_TASKRUN when such work is pending, so a non-blocking turn with
#   nothing to submit can skip the syscall.
# - COOP_TASKRUN (5.19) + TASKRUN_FLAG: no IPI to interrupt the thread for
#   completion work; it runs at our next enter.
# - SUBMIT_ALL (5.18): one bad SQE does not stop the rest of the batch; it
#   gets an error CQE like any other.
_S = SetupFlag
_TIERS_SINGLE: Final = (
    _S.SINGLE_ISSUER | _S.DEFER_TASKRUN | _S.TASKRUN_FLAG | _S.SUBMIT_ALL,
    _S.COOP_TASKRUN | _S.TASKRUN_FLAG | _S.SUBMIT_ALL,
    _S.SUBMIT_ALL,
    _S(0),
)
# Several threads (guest mode): COOP_TASKRUN queues completion work to the
# submitting thread without interrupting it; if that thread is idle, a
# waiter in another thread would never see the completion. So neither
# SINGLE_ISSUER/DEFER_TASKRUN nor COOP_TASKRUN here.
_TIERS_SHARED: Final = (_S.SUBMIT_ALL, _S(0))

# Features we cannot work without: NODROP (5.5) so overflow loses nothing,
# EXT_ARG (5.11) so a wait has a timeout without a timeout SQE.
_REQUIRED_FEATURES: Final = Feature.NODROP | Feature.EXT_ARG


def unavailable_reason(*, check_kernel: bool = False) -> str | None:
    """Why a ``Ring`` cannot be used here, or ``None`` if it can.

    Without ``check_kernel`` only the extension is checked (cheap, no
    syscall). With it, a tiny ring is created and closed, so kernel refusal
    (the ``io_uring_disabled`` sysctl, seccomp, missing features, or a
    simulated refusal through ``CORRAL_IO_URING_REFUSE``) is reported too.
    """
    if _lib is None:
        return _import_error
    if check_kernel:
        try:
            Ring(entries=2).close()
        except OSError as exc:
            return f"io_uring refused by the kernel: {exc}"
    return None


def buffer_id(cqe_flags: int) -> int | None:
    """The provided-buffer id carried by a CQE, or ``None`` if it has none."""
    if cqe_flags & CqeFlag.BUFFER:
        return cqe_flags >> CQE_BUFFER_SHIFT
    return None


def pin_buffer(obj: Any, *, writable: bool = False) -> tuple[int, int, Any]:
    """Pin a buffer-protocol object for the kernel: ``(address, nbytes, pin)``.

    The buffer export lives as long as ``pin`` does (keep it in the op record
    until the terminal CQE); while it lives a ``bytearray`` cannot be resized,
    so the address stays valid. ``writable=True`` refuses read-only buffers
    (``TypeError``), as a receive needs. Raises ``OSError(ENOSYS)`` without
    the extension.
    """
    if _ffi is None:
        raise OSError(errno.ENOSYS, str(_import_error))
    try:
        pin = _ffi.from_buffer(obj, require_writable=writable)
    except BufferError:
        # Python's own wording for the same mistake (socket.recv_into).
        raise TypeError(
            f"argument must be read-write bytes-like object, not {type(obj).__name__}"
        ) from None
    return int(_ffi.cast("uintptr_t", pin)), len(pin), pin


def _refusal_from_env() -> int | None:
    value = os.environ.get(REFUSE_ENV, "").strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    code = getattr(errno, value.upper(), None)
    if not isinstance(code, int):
        raise ValueError(f"{REFUSE_ENV}={value!r} is not an errno name or number")
    return code


def _oserror(neg_errno: int, what: str) -> OSError:
    code = -neg_errno
    return OSError(code, f"{what}: {os.strerror(code)}")


@attrs.frozen
class RingInfo:
    """What the kernel gave us: sizes, accepted setup flags, features, ops."""

    sq_entries: int
    cq_entries: int
    #: IORING_SETUP_* flags the kernel accepted (includes CQSIZE if asked).
    setup_flags: SetupFlag
    #: io_uring_params.features.
    features: Feature
    #: Opcodes IORING_REGISTER_PROBE reports as supported.
    opcodes: frozenset[int]
    #: IORING_REGISTER_PBUF_RING works (5.19+).
    buf_ring: bool
    #: Flag sets tried before the accepted one, each with the errno refusing it.
    refused: tuple[tuple[SetupFlag, int], ...]


@attrs.frozen
class RingStatistics:
    """Counters since the ring was created (see the C struct for meanings)."""

    enter_calls: int
    submitted: int
    completions: int
    wakeups: int
    overflow_flushes: int
    busy: int
    interrupted: int
    dropped: int
    provide_errors: int
    sq_pending: int
    cq_ready: int


class Ring:
    """One io_uring instance. See the module docstring for the contract.

    ``entries`` is the SQ size and ``cq_entries`` the CQ size (default: twice
    ``entries``; must be >= ``entries``); the kernel rounds both up to powers
    of two (``info`` has the real sizes). ``batch`` is how many CQEs one
    ``submit_and_wait``/``reap`` can return (default: the CQ size).
    ``single_issuer=False`` avoids the flags that tie the ring to its
    creating thread (guest mode). ``refuse_errno`` / ``refuse_setup_flags`` /
    ``refuse_buf_ring`` simulate an older or refusing kernel (tests): the
    first makes setup fail with that errno, the second answers EINVAL to any
    tier containing those flags, the third pretends IORING_REGISTER_PBUF_RING
    is missing.

    Raises ``OSError`` when io_uring is unavailable: the kernel's errno
    (EPERM when disabled by sysctl, ENOSYS under seccomp or on old kernels),
    or ENOSYS when the extension is missing or a required feature
    (IORING_FEAT_NODROP, IORING_FEAT_EXT_ARG) is absent.
    """

    #: Fill one SQE; see the module docstring. Bound at construction.
    prep: Callable[..., int]

    def __init__(
        self,
        entries: int = 256,
        cq_entries: int | None = None,
        *,
        single_issuer: bool = True,
        batch: int | None = None,
        refuse_errno: int | None = None,
        refuse_setup_flags: int = 0,
        refuse_buf_ring: bool = False,
    ) -> None:
        if _lib is None:
            raise OSError(errno.ENOSYS, str(_import_error))
        if entries < 1:
            raise ValueError(f"entries must be >= 1, not {entries}")
        if cq_entries is not None and cq_entries < entries:
            raise ValueError(f"cq_entries ({cq_entries}) must be >= entries ({entries})")
        simulated = refuse_errno is not None
        if refuse_errno is None:
            refuse_errno = _refusal_from_env()
            simulated = refuse_errno is not None
        r = _ffi.new("corral_ring *")
        refused: list[tuple[SetupFlag, int]] = []
        tiers = _TIERS_SINGLE if single_issuer else _TIERS_SHARED
        for flags in tiers:
            rc = _lib.corral_ring_setup(
                r, entries, cq_entries or 0, flags, refuse_errno or 0, refuse_setup_flags
            )
            if rc == 0:
                break
            if rc != -errno.EINVAL or flags == tiers[-1]:
                note = " (simulated)" if simulated and rc == -(refuse_errno or 0) else ""
                raise _oserror(rc, f"io_uring_setup refused{note}")
            refused.append((flags, -rc))
        self._r = r
        self._closer = weakref.finalize(self, _lib.corral_ring_close, r)
        self._buf_rings: list[BufRing] = []
        try:
            missing = _REQUIRED_FEATURES & ~Feature(r.features)
            if missing:
                raise OSError(
                    errno.ENOSYS,
                    f"io_uring lacks required features {missing!r} (need Linux 5.11+)",
                )
            supported = _ffi.new("uint8_t[256]")
            rc = _lib.corral_ring_probe(r, supported, 256)
            if rc < 0:
                raise _oserror(rc, "IORING_REGISTER_PROBE failed")
            opcodes = frozenset(i for i in range(256) if supported[i])
            self.info = RingInfo(
                sq_entries=r.sq_entries,
                cq_entries=r.cq_entries,
                setup_flags=SetupFlag(r.setup_flags),
                features=Feature(r.features),
                opcodes=opcodes,
                buf_ring=not refuse_buf_ring and self._probe_buf_ring(),
                refused=tuple(refused),
            )
        except BaseException:
            self.close()
            raise
        self.batch = batch or r.cq_entries
        # Result arrays, allocated once; the C side writes into them through
        # the cached pointers (an array with an exported buffer cannot be
        # resized, so the pointers stay valid).
        self.cqe_user_data = array.array("Q", bytes(8 * self.batch))
        self.cqe_res = array.array("i", bytes(4 * self.batch))
        self.cqe_flags = array.array("I", bytes(4 * self.batch))
        self._p_ud = _ffi.from_buffer("uint64_t[]", self.cqe_user_data)
        self._p_res = _ffi.from_buffer("int32_t[]", self.cqe_res)
        self._p_flags = _ffi.from_buffer("uint32_t[]", self.cqe_flags)
        self.prep = functools.partial(_lib.corral_ring_prep, r)
        self.prep_simple: Callable[..., int] = functools.partial(_lib.corral_ring_prep_simple, r)
        self.prep_buf: Callable[..., int] = functools.partial(_lib.corral_ring_prep_buf, r)
        self.prep_select: Callable[..., int] = functools.partial(_lib.corral_ring_prep_select, r)
        self._submit_and_wait = functools.partial(_lib.corral_ring_submit_and_wait, r)
        _lib.corral_ring_set_results(r, self._p_ud, self._p_res, self._p_flags, self.batch)
        #: ``turn(wait_nr, timeout_ns) -> n or -errno``: ``submit_and_wait``
        #: for the backend's loop turn, without the wrapper: the timeout in
        #: nanoseconds (-1 no limit, 0 poll), errors returned, not raised.
        self.turn: Callable[[int, int], int] = functools.partial(_lib.corral_ring_turn, r)

    def _probe_buf_ring(self) -> bool:
        # IORING_REGISTER_PBUF_RING exists since 5.19; older kernels answer
        # EINVAL for the unknown register opcode. A throwaway one-entry ring
        # on the last group id tells us without touching real groups.
        b = _ffi.new("corral_bufring *")
        rc = _lib.corral_bufring_register(self._r, b, 0xFFFF, 1, _ffi.NULL, 1, 1, 0)
        if rc != 0:
            return False
        _lib.corral_bufring_unregister(self._r, b)
        return True

    # -- per-op and per-turn ------------------------------------------------

    def prep_op(
        self,
        opcode: int,
        *,
        fd: int = -1,
        addr: int = 0,
        length: int = 0,
        off: int = 0,
        op_flags: int = 0,
        user_data: int = 0,
        sqe_flags: int = 0,
        ioprio: int = 0,
        buf_index: int = 0,
        file_index: int = 0,
        addr3: int = 0,
    ) -> int:
        """Keyword form of ``prep``: same result codes (0, SQ_FULL, -errno).

        ``buf_index`` is also the buffer group for IOSQE_BUFFER_SELECT;
        ``file_index`` is also splice_fd_in / addr_len; ``op_flags`` is the
        op's flag word (msg_flags, poll events, timeout_flags, accept_flags,
        rw_flags, cancel_flags, open_flags...); ``ioprio`` carries the
        multishot / poll-first flags of recv, send and accept.
        """
        return _lib.corral_ring_prep(  # type: ignore[no-any-return]  # cffi returns Any
            self._r, opcode, fd, addr, length, off, op_flags, user_data,
            sqe_flags, ioprio, buf_index, file_index, addr3,
        )  # fmt: skip

    def submit(self) -> int:
        """Hand filled SQEs to the kernel without waiting.

        Returns how many the kernel consumed. Returns 0 on EINTR, EBUSY and
        EAGAIN (reap completions, then submit again: the SQEs stay queued).
        Raises ``OSError`` for other errors.
        """
        rc: int = _lib.corral_ring_submit(self._r)
        if rc < 0:
            raise _oserror(rc, "io_uring_enter (submit) failed")
        return rc

    def submit_and_wait(self, wait_nr: int = 1, timeout: float | None = None) -> int:
        """Submit, wait for ``wait_nr`` completions or ``timeout`` seconds
        (``None``: no limit; ``0``: do not block), reap. One syscall at most,
        plus one per CQ-overflow flush.

        Returns ``n``; the results are ``cqe_user_data[:n]``, ``cqe_res[:n]``
        (``-errno`` on failure) and ``cqe_flags[:n]``; they stay valid until
        the next ``submit_and_wait``/``reap``. Returns early (possibly 0) on
        ``wakeup()``, on a signal (EINTR: Python's handlers run once this
        returns), and when the kernel is short of resources (EBUSY/EAGAIN:
        call again). Raises ``OSError`` for real errors (EBADF, EEXIST when
        called from the wrong thread of a single-issuer ring, ...).
        """
        if timeout is None or timeout == float("inf"):
            ns = -1
        elif timeout <= 0:
            ns = 0
        else:
            ns = max(1, int(timeout * 1e9))
        rc: int = self._submit_and_wait(
            wait_nr, ns, self._p_ud, self._p_res, self._p_flags, self.batch
        )
        if rc < 0:
            raise _oserror(rc, "io_uring_enter failed")
        return rc

    def reap(self) -> int:
        """Copy ready CQEs into the result arrays without a syscall.

        With DEFER_TASKRUN completions may not be posted yet; use
        ``submit_and_wait(0, 0)`` to run that work.
        """
        rc: int = _lib.corral_ring_reap(self._r, self._p_ud, self._p_res, self._p_flags, self.batch)
        if rc < 0:
            raise _oserror(rc, "reap failed")
        return rc

    def completions(self, n: int) -> list[tuple[int, int, int]]:
        """The first ``n`` reaped CQEs as ``(user_data, res, flags)`` tuples."""
        return list(zip(self.cqe_user_data[:n], self.cqe_res[:n], self.cqe_flags[:n], strict=True))

    def wakeup(self) -> None:
        """Make a blocked ``submit_and_wait`` return. Thread-safe; a no-op
        once closed. Several wakeups before the waiter runs coalesce."""
        _lib.corral_ring_wakeup(self._r)

    # -- state --------------------------------------------------------------

    def sq_space(self) -> int:
        """Free SQ entries (0 means ``prep`` would return SQ_FULL)."""
        return _lib.corral_ring_sq_space(self._r)  # type: ignore[no-any-return]

    def sq_pending(self) -> int:
        """Filled SQEs the kernel has not consumed yet."""
        return _lib.corral_ring_sq_pending(self._r)  # type: ignore[no-any-return]

    def cq_ready(self) -> int:
        """CQEs posted and not reaped (wakeup CQEs included)."""
        return _lib.corral_ring_cq_ready(self._r)  # type: ignore[no-any-return]

    def sq_flags(self) -> int:
        """The kernel's SQ ring flags (IORING_SQ_CQ_OVERFLOW = 2, IORING_SQ_TASKRUN = 4)."""
        return _lib.corral_ring_sq_flags(self._r)  # type: ignore[no-any-return]

    def supports(self, opcode: int) -> bool:
        """Whether IORING_REGISTER_PROBE reported ``opcode`` as supported."""
        return opcode in self.info.opcodes

    def fileno(self) -> int:
        """The ring fd (-1 once closed)."""
        return self._r.fd  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        return bool(self._r.fd < 0)

    def statistics(self) -> RingStatistics:
        r = self._r
        return RingStatistics(
            enter_calls=r.enter_calls,
            submitted=r.submitted,
            completions=r.completions,
            wakeups=r.wakeups,
            overflow_flushes=r.overflow_flushes,
            busy=r.busy,
            interrupted=r.interrupted,
            dropped=r.dropped,
            provide_errors=r.provide_errors,
            sq_pending=self.sq_pending(),
            cq_ready=self.cq_ready(),
        )

    # -- registration -------------------------------------------------------

    def register_buf_ring(
        self,
        bgid: int,
        slab: Any,
        buf_size: int,
        nbufs: int,
        *,
        entries: int | None = None,
        add_all: bool = True,
        legacy: bool | None = None,
    ) -> BufRing:
        """Register a provided-buffer ring (group ``bgid``) over ``slab``.

        ``slab`` is a writable, page-aligned buffer (an ``mmap.mmap`` is) of
        at least ``buf_size * nbufs`` bytes; buffer id ``i`` is
        ``slab[i * buf_size:(i + 1) * buf_size]``. The ring gets ``entries``
        descriptors (default: ``nbufs`` rounded up to a power of two; at most
        32768). With ``add_all`` every buffer is given to the kernel at once.
        The ``BufRing`` keeps ``slab`` alive, but requests that selected a
        buffer may write into it until their terminal CQE, so keep the slab
        until those are reaped even after ``BufRing.close()``.

        On kernels without IORING_REGISTER_PBUF_RING (< 5.19,
        ``info.buf_ring`` False) the group is built with
        IORING_OP_PROVIDE_BUFFERS instead (``BufRing.legacy`` is True): the
        same contract for requests and for ``add``, at the cost of one SQE
        per add. ``legacy`` forces either mode (None: choose).

        Raises ``ValueError`` for bad sizes or alignment, and ``OSError``
        from the kernel: EEXIST when ``bgid`` is taken (ring mode), ENOSYS
        when neither mechanism is available.
        """
        if not 0 <= bgid < 0xFFFF:
            raise ValueError(f"buffer group id must be in 0..65534, not {bgid}")
        if buf_size < 1 or nbufs < 1 or nbufs > 32768:
            raise ValueError(f"need buf_size >= 1 and 1 <= nbufs <= 32768, not {buf_size}, {nbufs}")
        if entries is None:
            entries = 1 << (nbufs - 1).bit_length()
        if entries < nbufs or entries & (entries - 1) or entries > 32768:
            raise ValueError(f"entries must be a power of two in nbufs..32768, not {entries}")
        view = _ffi.from_buffer(slab, require_writable=True)
        if len(view) < buf_size * nbufs:
            raise ValueError(f"slab has {len(view)} bytes, need {buf_size * nbufs}")
        if int(_ffi.cast("uintptr_t", view)) % os.sysconf("SC_PAGESIZE"):
            raise ValueError("slab must be page-aligned (use mmap.mmap)")
        if legacy is None:
            legacy = not self.info.buf_ring
        if legacy and not self.supports(Op.PROVIDE_BUFFERS):
            raise OSError(errno.ENOSYS, "this kernel has no provided buffers (Linux 5.7+)")
        if not legacy and not self.info.buf_ring:
            raise OSError(
                errno.ENOSYS,
                "this kernel lacks provided-buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19+)",
            )
        b = _ffi.new("corral_bufring *")
        rc = _lib.corral_bufring_register(
            self._r, b, bgid, entries, view, buf_size, nbufs, int(legacy)
        )
        if rc < 0:
            raise _oserror(rc, f"registering buffer ring {bgid} failed")
        br = BufRing(self, b, slab, view)
        self._buf_rings.append(br)
        if add_all:
            br.add_range(0, nbufs)
        return br

    def register_files_sparse(self, n: int) -> None:
        """Create a table of ``n`` empty fixed-file slots (Linux 5.19+)."""
        rc = _lib.corral_ring_register_files_sparse(self._r, n)
        if rc < 0:
            raise _oserror(rc, "IORING_REGISTER_FILES2 failed")

    def update_files(self, offset: int, fds: Iterable[int]) -> int:
        """Put ``fds`` into slots ``offset...`` (-1 empties a slot).

        Returns how many slots were updated."""
        arr = _ffi.new("int32_t[]", list(fds))
        rc: int = _lib.corral_ring_update_files(self._r, offset, arr, len(arr))
        if rc < 0:
            raise _oserror(rc, "IORING_REGISTER_FILES_UPDATE2 failed")
        return rc

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Unregister buffer rings, unmap the rings, close the fds.

        Does not wait for in-flight requests (see the module docstring):
        drain first. Idempotent."""
        for br in self._buf_rings:
            br.close()
        self._buf_rings.clear()
        self._closer()

    def __enter__(self) -> Ring:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BufRing:
    """A registered provided-buffer ring; made by ``Ring.register_buf_ring``.

    A request with ``SqeFlag.BUFFER_SELECT`` and ``buf_index=bgid`` takes a
    buffer only when data arrives; its CQE then carries ``CqeFlag.BUFFER``
    and the id (``buffer_id(flags)``). Check that on EVERY such CQE, errors
    and cancellations included: a buffer the kernel picked is the caller's
    until it is added back with ``add``. An empty ring makes the request
    fail with ``-ENOBUFS``.
    """

    def __init__(self, ring: Ring, b: Any, slab: Any, view: Any) -> None:
        self._ring = ring
        self._b = b
        self.slab = slab
        self._view = view
        self.bgid: int = b.bgid
        self.buf_size: int = b.buf_size
        self.nbufs: int = b.nbufs
        self.entries: int = b.entries
        #: True when built with IORING_OP_PROVIDE_BUFFERS (no PBUF_RING).
        self.legacy: bool = bool(b.legacy)
        self._closer = weakref.finalize(self, _lib.corral_bufring_unregister, ring._r, b)
        #: ``raw_add(bid) -> 0 or -errno``: :meth:`add` as one bare C call,
        #: errors returned instead of raised (for a caller that only ever
        #: adds ids it knows are in range and not in the ring).
        self.raw_add: Callable[[int], int] = functools.partial(_lib.corral_bufring_add, b)

    def add(self, bid: int) -> None:
        """Give buffer ``bid`` (back) to the kernel, publishing the ring tail
        with release ordering (legacy mode: queueing a PROVIDE_BUFFERS SQE,
        which reaches the kernel at the next submit, before any request
        prepared after it). Each id must be added at most once per use:
        the kernel's ring head is invisible to us, so a double add cannot be
        detected here and would hand one buffer to two requests.

        Raises ``ValueError`` for an id outside the slab, ``OSError(EBADF)``
        after close."""
        rc = _lib.corral_bufring_add(self._b, bid)
        if rc < 0:
            self._raise(rc, bid)

    def add_range(self, first: int, count: int) -> None:
        """``add`` ids ``first .. first + count - 1`` with one publication."""
        rc = _lib.corral_bufring_add_range(self._b, first, count)
        if rc < 0:
            self._raise(rc, first)

    def _raise(self, rc: int, bid: int) -> None:
        if rc == -errno.EINVAL:
            raise ValueError(f"buffer id {bid} out of range 0..{self.nbufs - 1}")
        if rc == -errno.EOVERFLOW:
            raise RuntimeError(f"buffer ring {self.bgid}: more buffers added than it has")
        raise _oserror(rc, f"buffer ring {self.bgid}")

    def buffer(self, bid: int, nbytes: int | None = None) -> memoryview:
        """A view of buffer ``bid`` (its first ``nbytes`` bytes)."""
        if not 0 <= bid < self.nbufs:
            raise ValueError(f"buffer id {bid} out of range 0..{self.nbufs - 1}")
        size = self.buf_size if nbytes is None else min(nbytes, self.buf_size)
        start = bid * self.buf_size
        return memoryview(self.slab)[start : start + size]

    def close(self) -> None:
        """Unregister the group and unmap its descriptor ring. Idempotent."""
        self._closer()
