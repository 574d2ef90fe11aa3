"""``corral.Path``: :class:`pathlib.Path` with async I/O methods (Trio's API).

Pure-path methods (joining, ``name``, ``with_suffix``, ``relative_to``...)
are inherited from :class:`pathlib.PurePath` and stay synchronous. Every
method that touches the file system is async:

* natively on io_uring, through ``corral/_file_engine.py``: ``stat``,
  ``lstat``, ``exists`` and the ``is_*`` tests (statx), ``open``,
  ``read_bytes``/``read_text``/``write_bytes``/``write_text`` (openat, read,
  write, close), ``unlink``/``rmdir`` (unlinkat), ``mkdir`` (mkdirat),
  ``rename``/``replace`` (renameat), ``touch`` without ``exist_ok``;
* in a worker thread everywhere else (directory listing: ``iterdir``,
  ``glob``, ``rglob``; ``resolve``, ``readlink``, ``chmod``, ``owner``...),
  and for every method on backends without native file operations.

Results and errors are those of :class:`pathlib.Path`; methods that return
paths return ``corral.Path`` objects. Cancellation: a method cancelled
before its first kernel operation (or thread) starts has no effect; one
that started runs to completion and returns, and the cancel is raised at
the next checkpoint (``open`` never leaks a descriptor: see
:func:`corral.open_file`).
"""

from __future__ import annotations

import errno
import io
import os
import pathlib
import stat as stat_module
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import _file_engine as engine
from ._file_io import open_file
from ._threads import to_thread_run_sync

if TYPE_CHECKING:
    from typing import Self

    from ._file_binary import AsyncBinaryFile
    from ._file_text import AsyncTextFile

PathT = TypeVar("PathT", bound="Path")

# pathlib's "does not exist" errnos: these make exists()/is_*() return False.
_IGNORED_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


def _ignorable(exc: OSError) -> bool:
    return getattr(exc, "errno", None) in _IGNORED_ERRNOS


def _in_thread(name: str, *, returns: str = "value") -> Any:
    """An async method that runs ``pathlib.Path.<name>`` in a worker thread.

    ``returns``: ``"value"`` as is, ``"path"`` a corral path of the same
    class, ``"paths"`` an iterator of them (loaded in the thread).
    """
    method = getattr(pathlib.Path, name)

    async def wrapper(self: Path, *args: Any, **kwargs: Any) -> Any:
        # pathlib calls methods of path arguments (``other.stat()``): give it
        # pathlib paths, whose methods are synchronous.
        args = tuple(a._wrapped_cls(a) if isinstance(a, Path) else a for a in args)

        def call() -> Any:
            result = method(self._wrapped_cls(self), *args, **kwargs)
            if returns == "paths":
                return list(result)
            return result

        result = await to_thread_run_sync(call)
        if returns == "path":
            return type(self)(result)
        if returns == "paths":
            return map(type(self), result)
        return result

    wrapper.__name__ = name
    wrapper.__qualname__ = f"Path.{name}"
    wrapper.__doc__ = f"Like :meth:`pathlib.Path.{name}`, but async (runs in a worker thread)."
    if returns == "paths":
        wrapper.__doc__ += (
            "\n\nReturns a synchronous iterator over the results, all loaded"
            " during the call: ``for p in await path." + name + "(...):``."
        )
    return wrapper


class Path(pathlib.PurePath):
    """An async :class:`pathlib.Path`. Instantiating it returns the concrete
    class for the platform, :class:`PosixPath` or :class:`WindowsPath`."""

    __slots__ = ()

    _wrapped_cls: ClassVar[type[pathlib.Path]]

    def __new__(cls, *args: str | os.PathLike[str]) -> Self:
        if cls is Path:
            cls = WindowsPath if os.name == "nt" else PosixPath  # type: ignore[assignment]
        return super().__new__(cls, *args)

    def __repr__(self) -> str:
        return f"corral.Path({str(self)!r})"

    # -- metadata (statx on io_uring) ------------------------------------------

    async def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """Like :meth:`pathlib.Path.stat`, but async (statx on io_uring)."""
        return await engine.stat(self, follow_symlinks=follow_symlinks)

    async def samefile(self, other_path: str | os.PathLike[str]) -> bool:
        """Like :meth:`pathlib.Path.samefile`, but async (two statx)."""
        st = await engine.stat(self)
        return os.path.samestat(st, await engine.stat(other_path))

    async def lstat(self) -> os.stat_result:
        """Like :meth:`pathlib.Path.lstat`, but async."""
        return await engine.stat(self, follow_symlinks=False)

    async def exists(self, *, follow_symlinks: bool = True) -> bool:
        """Like :meth:`pathlib.Path.exists`, but async."""
        try:
            await engine.stat(self, follow_symlinks=follow_symlinks)
        except OSError as exc:
            if not _ignorable(exc):
                raise
            return False
        except ValueError:
            return False
        return True

    async def _mode_test(self, test: Callable[[int], bool], *, follow: bool = True) -> bool:
        try:
            st = await engine.stat(self, follow_symlinks=follow)
        except OSError as exc:
            if not _ignorable(exc):
                raise
            return False
        except ValueError:
            return False
        return test(st.st_mode)

    async def is_dir(self) -> bool:
        """Like :meth:`pathlib.Path.is_dir`, but async."""
        return await self._mode_test(stat_module.S_ISDIR)

    async def is_file(self) -> bool:
        """Like :meth:`pathlib.Path.is_file`, but async."""
        return await self._mode_test(stat_module.S_ISREG)

    async def is_symlink(self) -> bool:
        """Like :meth:`pathlib.Path.is_symlink`, but async."""
        return await self._mode_test(stat_module.S_ISLNK, follow=False)

    async def is_socket(self) -> bool:
        """Like :meth:`pathlib.Path.is_socket`, but async."""
        return await self._mode_test(stat_module.S_ISSOCK)

    async def is_fifo(self) -> bool:
        """Like :meth:`pathlib.Path.is_fifo`, but async."""
        return await self._mode_test(stat_module.S_ISFIFO)

    async def is_block_device(self) -> bool:
        """Like :meth:`pathlib.Path.is_block_device`, but async."""
        return await self._mode_test(stat_module.S_ISBLK)

    async def is_char_device(self) -> bool:
        """Like :meth:`pathlib.Path.is_char_device`, but async."""
        return await self._mode_test(stat_module.S_ISCHR)

    # -- contents ------------------------------------------------------------------

    async def open(
        self,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> AsyncTextFile | AsyncBinaryFile:
        """Like :meth:`pathlib.Path.open`, but async: see
        :func:`corral.open_file`."""
        if "b" not in mode:
            encoding = io.text_encoding(encoding)
        return await open_file(self, mode, buffering, encoding, errors, newline)

    async def read_bytes(self) -> bytes:
        """Like :meth:`pathlib.Path.read_bytes`, but async (on io_uring: an
        openat, one read for a small file, a close)."""
        async with await open_file(self, "rb") as f:
            return await f.read()

    async def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        """Like :meth:`pathlib.Path.read_text`, but async."""
        encoding = io.text_encoding(encoding)
        async with await open_file(self, "r", encoding=encoding, errors=errors) as f:
            return await f.read()

    async def write_bytes(self, data: Any) -> int:
        """Like :meth:`pathlib.Path.write_bytes`, but async."""
        view = memoryview(data)
        async with await open_file(self, "wb") as f:
            return await f.write(view)

    async def write_text(
        self,
        data: str,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> int:
        """Like :meth:`pathlib.Path.write_text`, but async."""
        if not isinstance(data, str):
            raise TypeError(f"data must be str, not {type(data).__name__}")
        encoding = io.text_encoding(encoding)
        async with await open_file(
            self, "w", encoding=encoding, errors=errors, newline=newline
        ) as f:
            return await f.write(data)

    # -- names (unlinkat / mkdirat / renameat on io_uring) ----------------------

    async def unlink(self, missing_ok: bool = False) -> None:
        """Like :meth:`pathlib.Path.unlink`, but async."""
        try:
            await engine.unlink(self)
        except FileNotFoundError:
            if not missing_ok:
                raise

    async def rmdir(self) -> None:
        """Like :meth:`pathlib.Path.rmdir`, but async."""
        await engine.unlink(self, rmdir=True)

    async def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Like :meth:`pathlib.Path.mkdir`, but async."""
        try:
            await engine.mkdir(self, mode)
        except FileNotFoundError:
            if not parents or self.parent == self:
                raise
            await self.parent.mkdir(parents=True, exist_ok=True)
            await self.mkdir(mode, parents=False, exist_ok=exist_ok)
        except OSError:
            if not exist_ok or not await self.is_dir():
                raise

    async def rename(self, target: str | os.PathLike[str]) -> Self:
        """Like :meth:`pathlib.Path.rename`, but async; returns the new path."""
        await engine.rename(self, target)
        return type(self)(target)

    async def replace(self, target: str | os.PathLike[str]) -> Self:
        """Like :meth:`pathlib.Path.replace`, but async; returns the new path."""
        await engine.rename(self, target, replace=True)
        return type(self)(target)

    async def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        """Like :meth:`pathlib.Path.touch`, but async. Updating the times of
        an existing file (``exist_ok=True``) runs in a worker thread."""
        if exist_ok:
            await to_thread_run_sync(partial(self._wrapped_cls(self).touch, mode, exist_ok))
            return
        fd = await engine.open_fd(self, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
        from ._core import CancelScope

        with CancelScope(shield=True):
            await engine.close_fd(fd)

    # -- in a worker thread -------------------------------------------------------

    @classmethod
    async def cwd(cls) -> Self:
        """Like :meth:`pathlib.Path.cwd`, but async."""
        return cls(await to_thread_run_sync(os.getcwd))

    @classmethod
    async def home(cls) -> Self:
        """Like :meth:`pathlib.Path.home`, but async."""
        return cls(await to_thread_run_sync(pathlib.Path.home))

    def as_uri(self) -> str:
        """Like :meth:`pathlib.Path.as_uri` (no I/O: synchronous)."""
        return self._wrapped_cls(self).as_uri()

    if TYPE_CHECKING:

        async def iterdir(self) -> Iterator[Self]: ...
        async def glob(self, pattern: str) -> Iterator[Self]: ...
        async def rglob(self, pattern: str) -> Iterator[Self]: ...
        async def absolute(self) -> Self: ...
        async def expanduser(self) -> Self: ...
        async def resolve(self, strict: bool = False) -> Self: ...
        async def readlink(self) -> Self: ...
        async def chmod(self, mode: int, *, follow_symlinks: bool = True) -> None: ...
        async def lchmod(self, mode: int) -> None: ...
        async def owner(self) -> str: ...
        async def group(self) -> str: ...
        async def is_mount(self) -> bool: ...
        async def symlink_to(
            self, target: str | os.PathLike[str], target_is_directory: bool = False
        ) -> None: ...
        async def hardlink_to(self, target: str | os.PathLike[str]) -> None: ...
        async def link_to(self, target: str | os.PathLike[str]) -> None: ...
    else:
        iterdir = _in_thread("iterdir", returns="paths")
        glob = _in_thread("glob", returns="paths")
        rglob = _in_thread("rglob", returns="paths")
        absolute = _in_thread("absolute", returns="path")
        expanduser = _in_thread("expanduser", returns="path")
        resolve = _in_thread("resolve", returns="path")
        readlink = _in_thread("readlink", returns="path")
        chmod = _in_thread("chmod")
        lchmod = _in_thread("lchmod")
        owner = _in_thread("owner")
        group = _in_thread("group")
        is_mount = _in_thread("is_mount")
        symlink_to = _in_thread("symlink_to")
        hardlink_to = _in_thread("hardlink_to")
        if sys.version_info < (3, 12):
            link_to = _in_thread("link_to")
        if sys.version_info >= (3, 12):
            is_junction = _in_thread("is_junction")
        if sys.version_info >= (3, 13):
            full_match = _in_thread("full_match")


class PosixPath(Path, pathlib.PurePosixPath):
    """An async :class:`pathlib.PosixPath` (see :class:`Path`)."""

    __slots__ = ()

    _wrapped_cls: ClassVar[type[pathlib.Path]] = pathlib.PosixPath


class WindowsPath(Path, pathlib.PureWindowsPath):
    """An async :class:`pathlib.WindowsPath` (see :class:`Path`)."""

    __slots__ = ()

    _wrapped_cls: ClassVar[type[pathlib.Path]] = pathlib.WindowsPath
