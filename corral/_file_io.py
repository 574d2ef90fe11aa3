"""Asynchronous files: :func:`open_file`, :func:`wrap_file` and
:class:`AsyncIOWrapper` (Trio's file API).

:func:`open_file` returns corral's own file objects
(:class:`~corral._file_binary.AsyncBinaryFile`,
:class:`~corral._file_text.AsyncTextFile`) whose every kernel call goes
through the completion core on io_uring (openat, statx, read, write, fsync,
ftruncate, close: no worker thread) and through worker threads on backends
without native file operations (``corral/_file_engine.py`` decides per
call). They behave as the objects :func:`open` returns, with the I/O
methods async.

:func:`wrap_file` wraps an arbitrary synchronous file object (a
:class:`io.StringIO`, a file from another library) and runs its blocking
methods in worker threads, exactly as Trio's ``wrap_file`` does: corral
cannot know how such an object does its I/O.
"""

from __future__ import annotations

import errno
import io
import locale
import operator
import os
import stat as stat_module
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from . import _file_engine as engine
from ._abc import AsyncResource
from ._core import CancelScope, checkpoint_if_cancelled
from ._file_binary import _RANDOM, _RAW, _READER, _WRITER, AsyncBinaryFile
from ._file_text import AsyncTextFile
from ._threads import to_thread_run_sync

if TYPE_CHECKING:
    from _typeshed import OpenBinaryMode, OpenTextMode, StrOrBytesPath

FileT = TypeVar("FileT")
FileT_co = TypeVar("FileT_co", covariant=True)

#: Attributes of the wrapped file that :class:`AsyncIOWrapper` exposes as is.
_SYNC_ATTRS = frozenset(
    {
        "closed", "encoding", "errors", "fileno", "isatty", "newlines",
        "readable", "seekable", "writable", "buffer", "raw", "line_buffering",
        "closefd", "name", "mode", "getvalue", "getbuffer",
    }
)  # fmt: skip
#: Methods of the wrapped file that :class:`AsyncIOWrapper` runs in a thread.
_ASYNC_METHODS = frozenset(
    {
        "flush", "read", "read1", "readall", "readinto", "readline",
        "readlines", "seek", "tell", "truncate", "write", "writelines",
        "readinto1", "peek",
    }
)  # fmt: skip


class AsyncIOWrapper(AsyncResource, Generic[FileT_co]):
    """An asynchronous view of a synchronous file object (see
    :func:`wrap_file`): the wrapped object's attributes and methods, the
    blocking ones (read, write, seek, ...) as async methods that run in a
    worker thread.

    Cancellation: a method whose thread has started runs to completion; its
    result is returned and the cancel is raised at the next checkpoint.
    :meth:`aclose` is shielded.
    """

    def __init__(self, file: FileT_co) -> None:
        self._wrapped = file

    @property
    def wrapped(self) -> FileT_co:
        """The wrapped synchronous file object."""
        return self._wrapped

    def __getattr__(self, name: str) -> Any:
        if name in _SYNC_ATTRS:
            return getattr(self._wrapped, name)
        if name in _ASYNC_METHODS:
            method = getattr(self._wrapped, name)

            async def in_thread(*args: Any, **kwargs: Any) -> Any:
                return await to_thread_run_sync(partial(method, *args, **kwargs))

            in_thread.__name__ = name
            in_thread.__qualname__ = f"{type(self).__qualname__}.{name}"
            in_thread.__doc__ = f"Like ``{type(self._wrapped).__name__}.{name}``, but async."
            # Cached: the next lookup finds the instance attribute.
            setattr(self, name, in_thread)
            return in_thread
        raise AttributeError(name)

    def __dir__(self) -> Iterable[str]:
        names = set(super().__dir__())
        names.update(a for a in _SYNC_ATTRS | _ASYNC_METHODS if hasattr(self._wrapped, a))
        return names

    def __aiter__(self) -> AsyncIOWrapper[FileT_co]:
        return self

    async def __anext__(self) -> Any:
        line = await self.readline()
        if line:
            return line
        raise StopAsyncIteration

    async def detach(self) -> AsyncIOWrapper[Any]:
        """Like :meth:`io.BufferedIOBase.detach`, in a thread; the result is
        wrapped too."""
        raw = await to_thread_run_sync(self._wrapped.detach)  # type: ignore[attr-defined]
        return wrap_file(raw)

    async def aclose(self) -> None:
        """Close the wrapped file in a worker thread, shielded from
        cancellation (the file is closed even if the caller is cancelled,
        then ``Cancelled`` is raised)."""
        with CancelScope(shield=True):
            await to_thread_run_sync(self._wrapped.close)  # type: ignore[attr-defined]
        await checkpoint_if_cancelled()


def wrap_file(file: FileT) -> AsyncIOWrapper[FileT]:
    """Wrap a synchronous file object in an :class:`AsyncIOWrapper`.

    Raises:
      TypeError: ``file`` has no callable ``close`` and no callable ``read``
        or ``write``.
    """

    def has(attr: str) -> bool:
        return callable(getattr(file, attr, None))

    if not (has("close") and (has("read") or has("write"))):
        raise TypeError(
            f"{file} does not implement required duck-file methods: close and (read or write)"
        )
    return AsyncIOWrapper(file)


# -- open_file -----------------------------------------------------------------


class _Mode:
    __slots__ = (
        "appending",
        "binary",
        "creating",
        "flags",
        "raw_mode",
        "reading",
        "updating",
        "writing",
    )

    def __init__(self, mode: str) -> None:
        if not isinstance(mode, str):
            raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
        if any(c not in "rwxab+t" for c in mode) or len(set(mode)) != len(mode):
            raise ValueError(f"invalid mode: {mode!r}")
        self.creating = "x" in mode
        self.reading = "r" in mode
        self.writing = "w" in mode
        self.appending = "a" in mode
        self.updating = "+" in mode
        self.binary = "b" in mode
        if self.binary and "t" in mode:
            raise ValueError("can't have text and binary mode at once")
        kinds = self.creating + self.reading + self.writing + self.appending
        if kinds > 1:
            raise ValueError("must have exactly one of create/read/write/append mode")
        if kinds == 0:
            raise ValueError(
                "Must have exactly one of create/read/write/append mode and at most one plus"
            )
        if self.updating:
            flags = os.O_RDWR
        elif self.reading:
            flags = os.O_RDONLY
        else:
            flags = os.O_WRONLY
        if self.creating:
            flags |= os.O_EXCL | os.O_CREAT
        elif self.writing:
            flags |= os.O_CREAT | os.O_TRUNC
        elif self.appending:
            flags |= os.O_APPEND | os.O_CREAT
        self.flags = flags | getattr(os, "O_BINARY", 0)  # Windows: no CRLF translation, as FileIO
        # The mode string io.FileIO reports.
        if self.creating:
            raw = "xb+" if self.updating else "xb"
        elif self.appending:
            raw = "ab+" if self.updating else "ab"
        elif self.reading or self.updating:
            raw = "rb+" if self.updating else "rb"
        else:
            raw = "wb"
        self.raw_mode = raw


def _optional_str(value: object, what: str) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"open() argument '{what}' must be str or None, not {type(value).__name__}")


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenTextMode = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncTextFile: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenBinaryMode,
    buffering: int = -1,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncBinaryFile: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncTextFile | AsyncBinaryFile: ...


async def open_file(
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncTextFile | AsyncBinaryFile:
    """Open a file, as :func:`open` does, and return an asynchronous file
    object: :class:`~corral._file_text.AsyncTextFile` for text modes,
    :class:`~corral._file_binary.AsyncBinaryFile` for binary ones. Same
    arguments, same meaning, same errors as :func:`open` (``FileNotFoundError``,
    ``IsADirectoryError``, ``PermissionError``, ``ValueError`` for a bad mode,
    ``LookupError`` for an unknown encoding...).

    On io_uring the file is opened with an io_uring openat and checked with
    statx: no worker thread. Elsewhere, and when ``opener`` is given, the
    blocking calls run in a worker thread.

    Cancellation: a cancelled open has no effect and never leaks a file
    descriptor. Cancelled before the kernel's openat starts, nothing is
    opened; an openat that blocks (a FIFO waiting for its peer) is
    interrupted; an fd that is opened anyway -- after the cancel, or before
    a later step fails -- is closed before the call raises.
    """
    m = _Mode(mode)
    buffering = operator.index(buffering)
    _optional_str(encoding, "encoding")
    _optional_str(errors, "errors")
    _optional_str(newline, "newline")
    if m.binary:
        if encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        if errors is not None:
            raise ValueError("binary mode doesn't take an errors argument")
        if newline is not None:
            raise ValueError("binary mode doesn't take a newline argument")
        if buffering == 1:
            import warnings

            warnings.warn(
                "line buffering (buffering=1) isn't supported in binary mode, "
                "the default buffer size will be used",
                RuntimeWarning,
                stacklevel=2,
            )
    elif buffering == 0:
        raise ValueError("can't have unbuffered text I/O")

    if not isinstance(file, int):
        name: Any = os.fspath(file)
        if not isinstance(name, (str, bytes)):  # pragma: no cover - fspath checks
            raise TypeError(f"expected str, bytes or os.PathLike object, not {type(file).__name__}")
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        if (isinstance(name, str) and "\0" in name) or (isinstance(name, bytes) and b"\0" in name):
            # (open()'s own words, which differ on Windows.)
            raise ValueError("embedded null character" if os.name == "nt" else "embedded null byte")
        if opener is None:
            fd = await engine.open_fd(name, m.flags, 0o666)
        else:
            fd = await to_thread_run_sync(
                partial(opener, cast(Any, name), m.flags | getattr(os, "O_CLOEXEC", 0))
            )
            if not isinstance(fd, int):
                raise TypeError(f"expected an integer from opener, not {type(fd).__name__}")
            if fd < 0:
                raise ValueError(f"opener returned {fd}")
    else:
        fd = name = file
        if fd < 0:
            raise ValueError("negative file descriptor")

    # From here on the fd is ours to close on any failure (or cancel).
    try:
        st = await engine.fstat(fd)
        if stat_module.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        if m.appending:
            # As FileIO does: an append-mode file starts at its end.
            os.lseek(fd, 0, os.SEEK_END)
        if buffering <= 1:
            # (Unbuffered files use it as the chunk size of readall/readline.)
            blksize = getattr(st, "st_blksize", 0)  # Windows' stat has none
            size = blksize if blksize > 1 else io.DEFAULT_BUFFER_SIZE
        else:
            size = buffering
        if buffering == 0:
            kind = _RAW
        elif m.updating:
            kind = _RANDOM
        elif m.reading:
            kind = _READER
        else:
            kind = _WRITER
        binary = AsyncBinaryFile(
            fd,
            name=name,
            mode=m.raw_mode,
            closefd=closefd,
            kind=kind,
            readable=m.reading or m.updating,
            writable=not m.reading or m.updating,
            appending=m.appending,
            buffer_size=size,
            st=st,
        )
    except BaseException:
        if closefd:
            engine.close_fd_now(fd)
        raise
    if m.binary:
        return binary
    try:
        if newline not in (None, "", "\n", "\r", "\r\n"):
            raise ValueError(f"illegal newline value: {newline}")
        resolved = io.text_encoding(encoding)
        if resolved == "locale":
            resolved = locale.getencoding()
        return AsyncTextFile(
            binary,
            mode=mode,
            encoding=resolved,
            errors="strict" if errors is None else errors,
            newline=newline,
            line_buffering=buffering == 1,
        )
    except BaseException:
        binary._fd = -1
        if closefd:
            engine.close_fd_now(fd)
        raise


AsyncFile = AsyncTextFile | AsyncBinaryFile

__all__ = ["AsyncFile", "AsyncIOWrapper", "open_file", "wrap_file"]
