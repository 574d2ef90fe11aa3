"""File-system op records the core vocabulary (``ops.py``) does not have:
unlinkat, renameat, mkdirat and ftruncate.

Each is a :class:`~corral._io.ops.RawOp` subclass whose constructor fills the
SQE fields the way liburing's ``io_uring_prep_*`` helpers do (the field
mapping is cited per class), and whose record owns the path bytes the SQE
points at until the terminal completion (``keep``), as every op record
must. The io_uring backend prepares a subclass of ``RawOp`` like ``RawOp``
itself, so no backend change is needed.

Only io_uring accepts raw ops, and only kernels that have the opcode:
callers check :func:`kernel_supports` first and run the blocking syscall in
a worker thread otherwise (``corral/_file_engine.py``).
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Any

from ._ring import Op
from .ops import AT_FDCWD, RawOp, StatxOp

#: unlinkat(2) flag: remove a directory (include/uapi/linux/fcntl.h).
AT_REMOVEDIR = 0x200


def _c_path(path: Any) -> tuple[Any, int]:
    """NUL-terminated path bytes in memory that does not move, and its address.

    The ctypes array keeps a buffer export on the bytearray, so the address
    stays valid for as long as the returned object lives (the op keeps it)."""
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise ValueError("embedded null byte")
    buf = bytearray(raw + b"\0")
    arr = (ctypes.c_char * len(buf)).from_buffer(buf)
    return (buf, arr), ctypes.addressof(arr)


def _u32(value: int) -> int:
    # Directory fds travel in 32-bit SQE fields (sqe->len); the kernel reads
    # them back as int, so AT_FDCWD (-100) round-trips through its u32 form.
    return value & 0xFFFFFFFF


class _PathRawOp(RawOp):
    __slots__ = ("path",)

    path: str

    def _describe(self) -> str:
        return repr(self.path)

    def _result(self) -> None:
        if self.res < 0:
            self._fail(self.res)


class UnlinkatOp(_PathRawOp):
    """unlinkat(2) (Linux 5.11): remove a file, or with ``rmdir=True`` an empty
    directory. Returns ``None``.

    SQE (io_uring_prep_unlinkat(3)): fd = dirfd, addr = path, unlink_flags
    (the op-flags word) = AT_REMOVEDIR or 0.
    """

    __slots__ = ()
    kind = "unlinkat"

    def __init__(self, path: Any, *, rmdir: bool = False, dir_fd: int = AT_FDCWD) -> None:
        keep, addr = _c_path(path)
        RawOp.__init__(
            self, Op.UNLINKAT, fd=dir_fd, addr=addr,
            op_flags=AT_REMOVEDIR if rmdir else 0, keep=keep,
        )  # fmt: skip
        self.path = os.fsdecode(path)


class MkdiratOp(_PathRawOp):
    """mkdirat(2) (Linux 5.15). Returns ``None``.

    SQE (io_uring_prep_mkdirat(3)): fd = dirfd, addr = path, len = mode.
    """

    __slots__ = ()
    kind = "mkdirat"

    def __init__(self, path: Any, mode: int = 0o777, *, dir_fd: int = AT_FDCWD) -> None:
        keep, addr = _c_path(path)
        RawOp.__init__(self, Op.MKDIRAT, fd=dir_fd, addr=addr, len=mode, keep=keep)
        self.path = os.fsdecode(path)


class RenameatOp(_PathRawOp):
    """renameat2(2) (Linux 5.11) with no flags: ``rename(2)`` semantics
    (replaces an existing destination). Returns ``None``.

    SQE (io_uring_prep_renameat(3)): fd = olddirfd, addr = oldpath, len =
    newdirfd, addr2 (shares sqe->off) = newpath, rename_flags = flags.
    """

    __slots__ = ("target",)
    kind = "renameat"

    def __init__(
        self,
        src: Any,
        dst: Any,
        *,
        src_dir_fd: int = AT_FDCWD,
        dst_dir_fd: int = AT_FDCWD,
        flags: int = 0,
    ) -> None:
        keep_src, addr_src = _c_path(src)
        keep_dst, addr_dst = _c_path(dst)
        RawOp.__init__(
            self, Op.RENAMEAT, fd=src_dir_fd, addr=addr_src, len=_u32(dst_dir_fd),
            off=addr_dst, op_flags=flags, keep=(keep_src, keep_dst),
        )  # fmt: skip
        self.path = os.fsdecode(src)
        self.target = os.fsdecode(dst)


class FtruncateOp(RawOp):
    """ftruncate(2) (Linux 6.9). Returns ``None``.

    SQE (io_uring_prep_ftruncate(3)): fd, off = length.
    """

    __slots__ = ()
    kind = "ftruncate"

    def __init__(self, fd: int, length: int) -> None:
        if length < 0:
            raise OSError(22, os.strerror(22))
        RawOp.__init__(self, Op.FTRUNCATE, fd=fd, off=length)

    def _describe(self) -> str:
        return f"fd={self.fd}"

    def _result(self) -> None:
        if self.res < 0:
            self._fail(self.res)


# struct statx (include/uapi/linux/stat.h), the fields os.stat reports:
# u32 mask, blksize; u64 attributes; u32 nlink, uid, gid; u16 mode, pad;
# u64 ino, size, blocks, attributes_mask; timestamps {s64 sec; u32 nsec;
# s32 pad} atime @64, btime @80, ctime @96, mtime @112; u32 rdev_major,
# rdev_minor, dev_major, dev_minor @128.
_HEAD = struct.Struct("=4xI8xIIIH2xQQQ")
_TIME = struct.Struct("=qI")
_DEVS = struct.Struct("=IIII")


def stat_result_from_statx(buf: Any) -> os.stat_result:
    """Decode a ``struct statx`` into exactly what :func:`os.stat` returns
    (float times computed as CPython does: ``sec + nsec * 1e-9``), built
    from one 19-field tuple (cheaper than keyword fields)."""
    blksize, nlink, uid, gid, mode, ino, size, blocks = _HEAD.unpack_from(buf)
    a_s, a_n = _TIME.unpack_from(buf, 64)
    c_s, c_n = _TIME.unpack_from(buf, 96)
    m_s, m_n = _TIME.unpack_from(buf, 112)
    r_maj, r_min, d_maj, d_min = _DEVS.unpack_from(buf, 128)
    return os.stat_result(
        (
            mode, ino, os.makedev(d_maj, d_min), nlink, uid, gid, size, a_s, m_s, c_s,
            a_s + a_n * 1e-9, m_s + m_n * 1e-9, c_s + c_n * 1e-9,
            a_s * 1_000_000_000 + a_n, m_s * 1_000_000_000 + m_n, c_s * 1_000_000_000 + c_n,
            blksize, blocks, os.makedev(r_maj, r_min),
        )
    )  # fmt: skip


class StatOp(StatxOp):
    """:class:`~corral._io.ops.StatxOp` whose result is decoded by
    :func:`stat_result_from_statx` (the file API's stat path)."""

    __slots__ = ()

    def _result(self) -> os.stat_result:
        if self.res < 0:
            self._fail(self.res)
        return stat_result_from_statx(self.buf)


def kernel_supports(backend: object, opcode: int) -> bool:
    """Whether ``backend`` accepts raw ops and its kernel reported ``opcode``
    in IORING_REGISTER_PROBE."""
    caps = getattr(backend, "capabilities", None)
    if caps is None or not caps.raw_ops:
        return False
    info = getattr(backend, "ring_info", None)
    return info is not None and opcode in info.opcodes


__all__ = [
    "AT_REMOVEDIR",
    "FtruncateOp",
    "MkdiratOp",
    "RenameatOp",
    "StatOp",
    "UnlinkatOp",
    "kernel_supports",
    "stat_result_from_statx",
]
