"""corral's binary file object: what ``open_file(..., "rb")`` returns.

One class plays the three roles :func:`open` gives a binary file --
``FileIO`` (``buffering=0``), ``BufferedReader``/``BufferedWriter``/
``BufferedRandom`` (the default) -- with the same methods, results and
errors, every I/O method async.

How it maps onto the kernel:

* The file position is ours: :attr:`_pos` is the *logical* position (the
  next byte the caller reads or writes) and every read or write of a
  seekable file is positional (pread/pwrite at ``_pos``), so an operation
  that never reached the kernel cannot have moved anything. Non-seekable
  files (pipes, ttys) read and write at the kernel's position. With
  O_APPEND, writes go to the end (the kernel's choice) and ``_pos`` is then
  read back from the kernel.
* Reads land in a read-ahead buffer (``_rbuf`` from ``_roff``) *before* the
  call returns or raises, and the position only advances when bytes are
  handed to the caller. So a read cancelled half-way (between two kernel
  reads) loses nothing: the bytes already read wait in the buffer for the
  next call, and ``tell()`` is unchanged.
* Writes are not buffered: each ``write`` reaches the kernel before it
  returns, so ``flush`` has nothing to do (it is still a checkpoint) and a
  file never holds data that a crash could lose on the Python side.
* A short read of a regular file means end of file (no extra read to see
  0 bytes: one kernel read per small file).

Concurrent calls on one file from several tasks are serialized in arrival
order, as the thread lock inside Python's buffered files serializes them.
"""

from __future__ import annotations

import io
import operator
import os
import warnings
from collections.abc import Iterable
from typing import Any

from . import _file_engine as engine
from ._abc import AsyncResource
from ._core import CancelScope, checkpoint, checkpoint_if_cancelled
from ._sync import Lock

_RAW, _READER, _WRITER, _RANDOM = "raw", "reader", "writer", "random"


def _size_arg(size: object) -> int:
    if size is None:
        return -1
    try:
        return operator.index(size)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"argument should be integer or None, not '{type(size).__name__}'"
        ) from None


def _bytes_view(data: object) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


class AsyncBinaryFile(AsyncResource):
    """An asynchronous binary file, as :func:`corral.open_file` returns for
    a ``"b"`` mode: the methods of :class:`io.BufferedReader`,
    :class:`io.BufferedWriter`, :class:`io.BufferedRandom` or (with
    ``buffering=0``) :class:`io.FileIO`, with every I/O method async.

    On io_uring each kernel call is an io_uring operation (no thread); on
    other backends it runs in a worker thread.

    Cancellation, for every async method: if the call is cancelled before
    its first kernel operation starts, it has no effect and raises
    :exc:`corral.Cancelled`. A kernel read or write that started is never
    abandoned (the kernel cannot cancel a regular-file read): its result is
    delivered, and the cancel is raised at the next checkpoint. A read made
    of several kernel reads that is cancelled between them raises
    ``Cancelled`` with the position unchanged and the bytes kept for the
    next read. A write that started writes all its data.
    """

    def __init__(
        self,
        fd: int,
        *,
        name: object,
        mode: str,
        closefd: bool,
        kind: str,
        readable: bool,
        writable: bool,
        appending: bool,
        buffer_size: int,
        st: os.stat_result | None,
    ) -> None:
        self._fd = fd
        self.name = name
        self.mode = mode
        self._closefd = closefd
        self._kind = kind
        self._readable = readable
        self._writable = writable
        self._appending = appending
        self._bufsize = buffer_size
        self._regular = st is not None and (st.st_mode & 0o170000) == 0o100000
        self._size_hint = st.st_size if st is not None and self._regular else 0
        try:
            # lseek(2) never waits for I/O: it only reads or sets f_pos.
            self._pos = os.lseek(fd, 0, os.SEEK_CUR)
            self._seekable = True
        except OSError:
            self._pos = 0
            self._seekable = False
        self._rbuf = bytearray()
        self._roff = 0
        self._lock = Lock()
        self._detached = False

    # -- plain attributes -------------------------------------------------

    def __repr__(self) -> str:
        cls = {
            _RAW: "FileIO",
            _READER: "BufferedReader",
            _WRITER: "BufferedWriter",
            _RANDOM: "BufferedRandom",
        }[self._kind]
        return f"<corral.{cls} name={self.name!r} mode={self.mode!r}>"

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self._fd < 0

    @property
    def closefd(self) -> bool:
        """Whether closing this object closes the file descriptor."""
        return self._closefd

    @property
    def raw(self) -> AsyncBinaryFile:
        """The unbuffered layer: corral's binary files have one layer, so this
        is the object itself."""
        return self

    def _check_open(self, what: str = "I/O operation on closed file") -> None:
        if self._fd < 0:
            if self._detached:
                raise ValueError("raw stream has been detached")
            raise ValueError(what)

    def _pre_read(self, what: str) -> None:
        # FileIO checks "closed" first; the buffered classes check the mode
        # first (a closed BufferedWriter still says it cannot read).
        if self._kind == _RAW:
            self._check_open()
            if not self._readable:
                raise io.UnsupportedOperation("File not open for reading")
        else:
            if not self._readable:
                raise io.UnsupportedOperation("read")
            self._check_open(what)

    def _pre_write(self, what: str, op: str = "write") -> None:
        if self._kind == _RAW:
            self._check_open()
            if not self._writable:
                raise io.UnsupportedOperation("File not open for writing")
        else:
            if not self._writable:
                raise io.UnsupportedOperation(op)
            self._check_open(what)

    def fileno(self) -> int:
        """The file descriptor. The kernel's file position is set to this
        object's position first, so that code using the descriptor directly
        starts where this object is."""
        self._check_open()
        if self._seekable and not self._appending:
            os.lseek(self._fd, self._pos, os.SEEK_SET)
        return self._fd

    def isatty(self) -> bool:
        """Whether the file is a terminal."""
        self._check_open()
        return os.isatty(self._fd)

    def readable(self) -> bool:
        """Whether the file was opened for reading."""
        self._check_open()
        return self._readable

    def writable(self) -> bool:
        """Whether the file was opened for writing."""
        self._check_open()
        return self._writable

    def seekable(self) -> bool:
        """Whether the file supports seek and tell."""
        self._check_open()
        return self._seekable

    # -- the read-ahead buffer ----------------------------------------------

    def _available(self) -> int:
        return len(self._rbuf) - self._roff

    def _take(self, n: int) -> bytes:
        """Hand ``n`` buffered bytes to the caller and advance the position.
        Synchronous: once called, the bytes are delivered."""
        rbuf, roff = self._rbuf, self._roff
        if roff == 0 and n == len(rbuf):
            data = bytes(rbuf)
            self._rbuf = bytearray()
        else:
            with memoryview(rbuf) as view:
                data = bytes(view[roff : roff + n])
            roff += n
            if roff == len(rbuf):
                self._rbuf = bytearray()
                roff = 0
            self._roff = roff
        if self._seekable:
            self._pos += n
        return data

    def _drop_read_ahead(self) -> None:
        # Harmless for seekable files (the position is logical); a
        # non-seekable file loses read-ahead it cannot give back, as
        # Python's buffered files do on a write.
        self._rbuf = bytearray()
        self._roff = 0

    async def _fill(self, want: int) -> int:
        """One kernel read of up to ``want`` bytes appended to the read-ahead
        buffer. Returns the bytes read (0 at end of file)."""
        offset = self._pos + self._available() if self._seekable else -1
        buf = bytearray(want)
        n = await engine.pread(self._fd, buf, offset)
        if n:
            # Stored before anything else can checkpoint: a cancel raised
            # later in this call finds the bytes here.
            if n < want:
                del buf[n:]
            if self._roff == len(self._rbuf):
                self._rbuf = buf
                self._roff = 0
            else:
                if self._roff:
                    del self._rbuf[: self._roff]
                    self._roff = 0
                self._rbuf += buf
        return n

    # -- reading ------------------------------------------------------------

    async def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all of them to end of file if ``size``
        is negative or ``None``); ``b""`` at end of file.

        Buffered files return fewer than ``size`` bytes only at end of file;
        unbuffered ones (``buffering=0``) do at most one kernel read, as
        :meth:`io.FileIO.read` does.

        Cancellation: see the class docstring.
        """
        self._pre_read("read of closed file")
        n = _size_arg(size)
        async with self._locked():
            if n < 0:
                return await self._readall()
            return await self._read_n(n, once=self._kind == _RAW)

    async def read1(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes with at most one kernel read
        (:meth:`io.BufferedReader.read1`)."""
        self._pre_read("read of closed file")
        n = _size_arg(size)
        async with self._locked():
            if n < 0:
                n = max(self._available(), self._bufsize)
            return await self._read_n(n, once=True)

    async def readall(self) -> bytes:
        """Read to end of file."""
        self._pre_read("read of closed file")
        async with self._locked():
            return await self._readall()

    async def _read_n(self, n: int, *, once: bool) -> bytes:
        if self._available() >= n or n == 0:
            await checkpoint()
            return self._take(n)
        if once and self._available():
            await checkpoint()
            return self._take(self._available())
        while self._available() < n:
            want = n - self._available()
            if self._kind != _RAW:
                want = max(want, self._bufsize)
            got = await self._fill(want)
            if not got or once or (self._regular and got < want):
                break
        return self._take(min(n, self._available()))

    async def _readall(self) -> bytes:
        did_io = False
        while True:
            want = self._bufsize
            if self._regular:
                # One read of the whole rest (+1 to see the end in the same
                # read), from the size seen at open time or the last read.
                rest = self._size_hint - self._pos - self._available()
                want = max(want, rest + 1)
            got = await self._fill(want)
            did_io = True
            if not got or (self._regular and got < want):
                break
            if self._regular:
                self._size_hint = max(self._size_hint, self._pos + self._available()) * 2
        if not did_io:  # pragma: no cover - the loop always reads once
            await checkpoint()
        return self._take(self._available())

    async def readinto(self, buffer: Any) -> int:
        """Read into a writable bytes-like object; returns the byte count
        (0 at end of file). With nothing buffered, a seekable file is read
        straight into ``buffer`` (no copy)."""
        self._pre_read("readinto of closed file")
        view = _bytes_view(buffer)
        if view.readonly:
            raise TypeError(
                f"readinto() argument must be read-write bytes-like object, "
                f"not {type(buffer).__name__}"
            )
        async with self._locked():
            if not self._available() and self._seekable and len(view):
                n = await engine.pread(self._fd, view, self._pos)
                self._pos += n
                return n
            data = await self._read_n(len(view), once=self._kind == _RAW)
            view[: len(data)] = data
            return len(data)

    async def readinto1(self, buffer: Any) -> int:
        """Like :meth:`readinto` with at most one kernel read."""
        self._pre_read("readinto of closed file")
        view = _bytes_view(buffer)
        async with self._locked():
            data = await self._read_n(len(view), once=True)
        view[: len(data)] = data
        return len(data)

    async def peek(self, size: int = 0) -> bytes:
        """Return buffered bytes without consuming them, reading once if the
        buffer is empty (:meth:`io.BufferedReader.peek`)."""
        self._pre_read("peek of closed file")
        async with self._locked():
            if not self._available():
                await self._fill(self._bufsize)
            else:
                await checkpoint()
            with memoryview(self._rbuf) as view:
                return bytes(view[self._roff :])

    async def readline(self, size: int | None = -1) -> bytes:
        """Read one line (up to and including ``b"\\n"``), at most ``size``
        bytes if ``size >= 0``; ``b""`` at end of file."""
        self._pre_read("readline of closed file")
        limit = _size_arg(size)
        async with self._locked():
            return await self._readline(limit)

    async def _readline(self, limit: int) -> bytes:
        scanned = 0
        did_io = False
        raw_seekable = self._kind == _RAW and self._seekable
        while True:
            start = self._roff + scanned
            end = len(self._rbuf) if limit < 0 else min(len(self._rbuf), self._roff + limit)
            i = self._rbuf.find(b"\n", start, end)
            if i >= 0:
                n = i + 1 - self._roff
                break
            scanned = end - self._roff
            if limit >= 0 and self._available() >= limit:
                n = limit
                break
            # An unbuffered, non-seekable file reads one byte at a time (as
            # io.RawIOBase.readline does): bytes past the line could not be
            # given back to the file.
            want = 1 if self._kind == _RAW and not self._seekable else self._bufsize
            got = await self._fill(want)
            did_io = True
            if not got:
                n = self._available() if limit < 0 else min(limit, self._available())
                break
        if not did_io:
            await checkpoint()
        line = self._take(n)
        if raw_seekable:
            # FileIO keeps no buffer: later reads see the file as it is then.
            self._drop_read_ahead()
        return line

    async def readlines(self, hint: int | None = -1) -> list[bytes]:
        """Read lines until end of file, or until their total size reaches
        ``hint`` if ``hint > 0``."""
        self._check_open("I/O operation on closed file.")
        self._pre_read("I/O operation on closed file.")
        limit = _size_arg(hint)
        lines: list[bytes] = []
        total = 0
        async with self._locked():
            while True:
                line = await self._readline(-1)
                if not line:
                    break
                lines.append(line)
                total += len(line)
                if 0 < limit <= total:
                    break
        return lines

    def __aiter__(self) -> AsyncBinaryFile:
        return self

    async def __anext__(self) -> bytes:
        self._check_open("I/O operation on closed file.")
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    # -- writing -----------------------------------------------------------------

    async def write(self, data: Any) -> int:
        """Write a bytes-like object. Returns the number of bytes written:
        all of them for buffered files; possibly fewer for unbuffered ones
        (one kernel write, as :meth:`io.FileIO.write`).

        Cancellation: cancelled before the first kernel write, nothing is
        written. Once the first write has started, the rest of ``data`` is
        written too (shielded) and the count returned; the cancel is raised
        at the next checkpoint.
        """
        self._pre_write("write to closed file")
        view = _bytes_view(data)
        async with self._locked():
            return await self._write(view)

    async def _write(self, view: memoryview) -> int:
        total = len(view)
        self._drop_read_ahead()
        if not total:
            await checkpoint()
            return 0
        positional = self._seekable and not self._appending
        n = await engine.pwrite(self._fd, view, self._pos if positional else -1)
        if positional:
            self._pos += n
        if self._kind != _RAW and n < total:
            with CancelScope(shield=True):
                while n < total:
                    m = await engine.pwrite(self._fd, view[n:], self._pos if positional else -1)
                    n += m
                    if positional:
                        self._pos += m
        if self._appending and self._seekable:
            self._pos = os.lseek(self._fd, 0, os.SEEK_CUR)
        return n

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write each bytes-like object of ``lines`` (no separators added)."""
        self._pre_write("write to closed file")
        for line in lines:
            await self.write(line)

    async def flush(self) -> None:
        """Nothing is buffered for writing, so this only checks that the
        file is open and is a checkpoint."""
        if self._writable and self._kind != _RAW:
            self._check_open("flush of closed file")
        elif self._fd < 0:
            raise ValueError("I/O operation on closed file.")
        await checkpoint()

    async def truncate(self, size: int | None = None) -> int:
        """Resize the file to ``size`` bytes (default: the position); the
        position is unchanged. Returns the new size."""
        if self._kind != _RAW:
            self._check_open("truncate of closed file")
        self._pre_write("truncate of closed file", "truncate")
        async with self._locked():
            length = self._pos if size is None else operator.index(size)
            await engine.ftruncate(self._fd, length)
            self._drop_read_ahead()
            return length

    async def fsync(self) -> None:
        """Flush the file's data and metadata to storage (fsync(2)). Not in
        :mod:`io`; provided because it is natively async on io_uring."""
        self._check_open()
        await engine.fsync(self._fd)

    async def fdatasync(self) -> None:
        """Flush the file's data to storage (fdatasync(2))."""
        self._check_open()
        await engine.fsync(self._fd, datasync=True)

    async def stat(self) -> os.stat_result:
        """The file's :class:`os.stat_result` (fstat(2), through statx(2) on
        io_uring)."""
        self._check_open()
        return await engine.fstat(self._fd)

    # -- position ---------------------------------------------------------

    async def seek(self, target: int, whence: int = 0) -> int:
        """Move to ``target`` relative to ``whence`` (``os.SEEK_SET``,
        ``SEEK_CUR``, ``SEEK_END``); returns the new position. Drops
        read-ahead. Synchronous under the hood (lseek(2) never waits for
        I/O), and a checkpoint before it acts: a cancelled seek did not
        move."""
        target = operator.index(target)
        whence = operator.index(whence)
        if self._kind != _RAW:
            self._check_open("seek of closed file")
            if whence not in (0, 1, 2):
                raise ValueError(f"whence value {whence} unsupported")
        else:
            self._check_open()
        async with self._locked():
            await checkpoint()
            if whence == os.SEEK_CUR and self._seekable:
                target += self._pos
                whence = os.SEEK_SET
            pos = os.lseek(self._fd, target, whence)
            self._pos = pos
            self._drop_read_ahead()
            return pos

    async def tell(self) -> int:
        """The current position (a checkpoint)."""
        self._check_open()
        await checkpoint()
        if not self._seekable:
            return os.lseek(self._fd, 0, os.SEEK_CUR)  # raises ESPIPE
        return self._pos

    # -- closing ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the file (and its descriptor, unless ``closefd=False``).

        Shielded from cancellation: the file is closed even if the calling
        scope is cancelled, then ``Cancelled`` is raised. Closing a closed
        file does nothing.
        """
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._closefd:
            with CancelScope(shield=True):
                await engine.close_fd(fd)
        await checkpoint_if_cancelled()

    async def detach(self) -> AsyncBinaryFile:
        """Separate the unbuffered layer: returns an unbuffered file object
        on the same descriptor and position; this object becomes unusable."""
        self._check_open("raw stream has been detached")
        await checkpoint()
        raw = AsyncBinaryFile.__new__(AsyncBinaryFile)
        raw.__dict__.update(self.__dict__)
        raw._kind = _RAW
        raw._rbuf = bytearray()
        raw._roff = 0
        raw._lock = Lock()
        # Give bytes we had read ahead back to the kernel position.
        if self._seekable:
            os.lseek(self._fd, self._pos, os.SEEK_SET)
        self._fd = -1
        self._detached = True
        return raw

    def _locked(self) -> _FileLock:
        return _FileLock(self._lock)

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0 and self._closefd:
            self._fd = -1
            warnings.warn(ResourceWarning(f"unclosed file {self!r}"), stacklevel=2, source=self)
            engine.close_fd_now(fd)


class _FileLock:
    """``async with``: take the file's lock without a second checkpoint when
    it is free (the operation inside checkpoints)."""

    __slots__ = ("_lock",)

    def __init__(self, lock: Lock) -> None:
        self._lock = lock

    async def __aenter__(self) -> None:
        lock = self._lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
