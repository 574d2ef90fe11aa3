"""The syscalls under corral's file API, done natively or in worker threads.

One function per file syscall. Each picks, per call, how to run it:

* on a backend whose ``capabilities.native_file_ops`` is true (io_uring), as
  an op record through :func:`corral._io.perform` -- no Python thread is
  involved, so reading 2,000 files at once needs no 2,000 threads; ops the
  core vocabulary lacks use the raw-op records of ``_io/file_ops.py`` when
  the kernel has the opcode;
* otherwise (the epoll adapter, a run without a completion backend, or a
  kernel without the opcode) as the blocking ``os`` call in a worker thread
  through ``corral.to_thread.run_sync``.

Cancellation is the same either way: a call that started is not abandoned
(a regular-file read or an openat in the kernel cannot be interrupted, and a
worker thread is not abandoned), so its result is returned and the cancelled
scope raises at the caller's next checkpoint. The one exception is
:func:`open_fd`, which can block indefinitely (a FIFO waits for its peer):
there a cancel interrupts the kernel's openat (io_uring signals its worker,
which reports EINTR) or abandons the worker thread, and an fd that is opened
anyway is closed by the runtime -- never leaked.

Errors are the ``OSError`` subclasses :mod:`os` raises, with ``filename``
(and ``filename2``) set as :mod:`os` sets them.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._core import current_io_manager
from ._io import _winfile, file_ops
from ._io._ring import Op
from ._io.ops import (
    AT_FDCWD,
    CloseOp,
    FsyncOp,
    OpenatOp,
    ReadOp,
    WriteOp,
)
from ._io.perform import perform
from ._threads import to_thread_run_sync

_WINDOWS = sys.platform == "win32"

T = TypeVar("T")

#: statx(2)/fstatat(2) flag: do not follow a final symlink.
AT_SYMLINK_NOFOLLOW = 0x100

#: Tests set this to run the thread path on a backend with native file ops.
force_threads = False


def native_backend() -> Any:
    """The running backend if it does file ops natively, else ``None``."""
    manager = current_io_manager()
    caps = getattr(manager, "capabilities", None)
    if caps is None or not caps.native_file_ops or force_threads:
        return None
    return manager


def _raw_backend(opcode: int) -> Any:
    backend = native_backend()
    if backend is not None and file_ops.kernel_supports(backend, opcode):
        return backend
    return None


def _with_filename(exc: OSError, filename: Any, filename2: Any = None) -> OSError:
    if filename2 is None:
        return OSError(exc.errno, exc.strerror, filename)
    return OSError(exc.errno, exc.strerror, filename, None, filename2)


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call in a worker thread (not abandoned on cancel)."""
    return await to_thread_run_sync(fn, *args)


# -- opening and closing ----------------------------------------------------


class _ThreadOpen:
    """An ``os.open`` in a worker thread that a cancel may abandon.

    The thread and the task hand the fd over under a lock: whichever side
    learns second that the other is gone closes it, so an fd opened after
    its task was cancelled is closed, not leaked.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.fd: int | None = None

    def run(self, path: Any, flags: int, mode: int) -> int:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)  # Windows: PEP 446
        with self.lock:
            if self.abandoned:
                os.close(fd)
                return -1
            self.fd = fd
        return fd

    def abandon(self) -> None:
        with self.lock:
            self.abandoned = True
            fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


async def open_fd(path: Any, flags: int, mode: int = 0o666) -> int:
    """openat(2) relative to the current directory; close-on-exec always.

    Cancellation: see the module docstring; the returned fd is the caller's
    to close (it must not checkpoint before taking ownership)."""
    filename = os.fspath(path)
    if native_backend() is not None:
        op = OpenatOp(filename, flags, mode)
        try:
            fd: int = await perform(op)
        except OSError as exc:
            raise _with_filename(exc, filename) from None
        return fd
    opener = _ThreadOpen()
    try:
        return await to_thread_run_sync(opener.run, filename, flags, mode, abandon_on_cancel=True)
    except BaseException:
        opener.abandon()
        raise


async def close_fd(fd: int) -> None:
    """close(2). Not cancellable once called (the caller shields it)."""
    if native_backend() is not None:
        await perform(CloseOp(fd))
    else:
        # close(2) of a regular file does not block on local file systems;
        # doing it inline saves a thread round trip per file.
        os.close(fd)


def close_fd_now(fd: int) -> None:
    """Close synchronously (used on error paths that may not await)."""
    try:
        os.close(fd)
    except OSError:
        pass


# -- metadata -------------------------------------------------------------


async def fstat(fd: int) -> os.stat_result:
    """fstat(2) through statx(2) with AT_EMPTY_PATH."""
    if native_backend() is not None:
        result: os.stat_result = await perform(file_ops.StatOp("", dir_fd=fd))
        return result
    return await to_thread_run_sync(os.fstat, fd)


async def stat(path: Any, *, follow_symlinks: bool = True) -> os.stat_result:
    """stat(2) / lstat(2) through statx(2)."""
    filename = os.fspath(path)
    if native_backend() is not None:
        flags = 0 if follow_symlinks else AT_SYMLINK_NOFOLLOW
        try:
            result: os.stat_result = await perform(file_ops.StatOp(filename, AT_FDCWD, flags))
        except OSError as exc:
            raise _with_filename(exc, filename) from None
        return result
    if follow_symlinks:
        return await to_thread_run_sync(os.stat, filename)
    return await to_thread_run_sync(os.lstat, filename)


# -- data ---------------------------------------------------------------------


def _pread_into(fd: int, buf: Any, offset: int) -> int:
    if _WINDOWS:  # no os.readv/os.preadv
        return _winfile.pread_into(fd, buf, offset)
    if offset < 0:
        return os.readv(fd, [buf])
    return os.preadv(fd, [buf], offset)


def _pwrite_from(fd: int, data: Any, offset: int) -> int:
    if _WINDOWS:  # no os.pwrite
        return _winfile.pwrite_from(fd, data, offset)
    if offset < 0:
        return os.write(fd, data)
    return os.pwrite(fd, data, offset)


async def pread(fd: int, buf: Any, offset: int) -> int:
    """Read into the writable buffer ``buf`` at ``offset`` (``-1``: at the
    file position, advancing it). Returns the bytes read, 0 at EOF."""
    if native_backend() is not None:
        n: int = await perform(ReadOp(fd, buf, offset))
        return n
    return await to_thread_run_sync(_pread_into, fd, buf, offset)


async def pwrite(fd: int, data: Any, offset: int) -> int:
    """Write ``data`` at ``offset`` (``-1``: at the file position, or at the
    end with O_APPEND). Returns the bytes written (may be short)."""
    if native_backend() is not None:
        n: int = await perform(WriteOp(fd, data, offset))
        return n
    return await to_thread_run_sync(_pwrite_from, fd, data, offset)


async def fsync(fd: int, *, datasync: bool = False) -> None:
    """fsync(2) or fdatasync(2)."""
    if native_backend() is not None:
        await perform(FsyncOp(fd, datasync))
    else:
        await to_thread_run_sync(os.fdatasync if datasync and not _WINDOWS else os.fsync, fd)


async def ftruncate(fd: int, length: int) -> None:
    """ftruncate(2) (io_uring needs Linux 6.9; else a worker thread)."""
    if _raw_backend(Op.FTRUNCATE) is not None:
        await perform(file_ops.FtruncateOp(fd, length))
    else:
        await to_thread_run_sync(os.ftruncate, fd, length)


# -- names ----------------------------------------------------------------


async def unlink(path: Any, *, rmdir: bool = False) -> None:
    """unlink(2), or rmdir(2) with ``rmdir=True``."""
    filename = os.fspath(path)
    if _raw_backend(Op.UNLINKAT) is not None:
        try:
            await perform(file_ops.UnlinkatOp(filename, rmdir=rmdir))
        except OSError as exc:
            raise _with_filename(exc, filename) from None
    else:
        await to_thread_run_sync(os.rmdir if rmdir else os.unlink, filename)


async def mkdir(path: Any, mode: int = 0o777) -> None:
    """mkdir(2)."""
    filename = os.fspath(path)
    if _raw_backend(Op.MKDIRAT) is not None:
        try:
            await perform(file_ops.MkdiratOp(filename, mode))
        except OSError as exc:
            raise _with_filename(exc, filename) from None
    else:
        await to_thread_run_sync(os.mkdir, filename, mode)


async def rename(src: Any, dst: Any, *, replace: bool = False) -> None:
    """rename(2) (replaces an existing destination where rename(2) does;
    ``replace=True`` replaces it on Windows too, as :func:`os.replace`)."""
    source, target = os.fspath(src), os.fspath(dst)
    if _raw_backend(Op.RENAMEAT) is not None:
        try:
            await perform(file_ops.RenameatOp(source, target))
        except OSError as exc:
            raise _with_filename(exc, source, target) from None
    else:
        await to_thread_run_sync(os.replace if replace else os.rename, source, target)
