"""Positional file I/O on Windows C runtime fds: the one home of pread/pwrite
where Python's :mod:`os` has neither (``os.pread``/``os.preadv`` and their
write twins are POSIX-only, even in 3.13).

A positional call must leave the file position alone (pread(2)). Windows can
read at an offset (``ReadFile`` with ``OVERLAPPED.Offset``) but, on a handle
opened for synchronous I/O -- which is what ``os.open`` gives -- that call
moves the file pointer too, so either way the position has to be put back.
These helpers seek, transfer and restore. That is not atomic: a stream read
or write on the same fd in another thread at the same moment could see the
temporary position. corral's file objects do not mix the two concurrently
on one fd (a file's operations on the position are serialized by the file
object); a caller sharing a raw fd between threads must do the same.
"""

from __future__ import annotations

import os
from typing import Any


def pread_into(fd: int, buf: Any, offset: int) -> int:
    """Read into the writable buffer ``buf`` at ``offset`` (``-1``: at the
    file position, advancing it). Returns the bytes read, 0 at EOF; raises
    ``OSError`` as ``os.read`` does."""
    view = memoryview(buf).cast("B")
    if offset < 0:
        data = os.read(fd, len(view))
    else:
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, len(view))
        finally:
            os.lseek(fd, pos, os.SEEK_SET)
    view[: len(data)] = data
    return len(data)


def pwrite_from(fd: int, data: Any, offset: int) -> int:
    """Write ``data`` at ``offset`` (``-1``: at the file position, or at the
    end with ``O_APPEND``). Returns the bytes written; raises ``OSError`` as
    ``os.write`` does."""
    if offset < 0:
        return os.write(fd, data)
    pos = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)
    finally:
        os.lseek(fd, pos, os.SEEK_SET)
