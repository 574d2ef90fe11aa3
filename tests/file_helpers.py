"""Shared helpers for the file API tests: running each test on every file
engine (io_uring natively, worker threads, the epoll backend when present),
and counting open descriptors."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import corral
from corral import _file_engine
from corral._io import _ring

ENGINES: list[str] = []
if _ring.unavailable_reason(check_kernel=True) is None:
    ENGINES += ["io_uring", "threads"]
if sys.platform == "win32":
    # Worker threads: the IOCP backend has no native file ops (yet).
    ENGINES.append("iocp")
elif importlib.util.find_spec("corral._io.epoll") is not None:
    ENGINES.append("epoll")

_current = {"engine": "io_uring"}


@pytest.fixture(params=ENGINES, autouse=True)
def file_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each file engine in turn: the test runs once per engine."""
    name = str(request.param)
    _current["engine"] = name
    monkeypatch.setattr(_file_engine, "force_threads", name == "threads")
    return name


def current_engine() -> str:
    """The engine the running test uses."""
    return _current["engine"]


def run_on_engine(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """The run function of these tests: corral.run on the current engine's
    backend."""
    engine = _current["engine"]
    backend = engine if engine in ("epoll", "iocp") else "io_uring"
    return corral.run(fn, *args, backend=backend, **kwargs)


def open_fds() -> set[int]:
    """The process's open descriptors (from /proc/self/fd), without the one
    used to list them (its number varies, so it would look like a leak)."""
    if sys.platform == "win32":
        # No /proc: probe the C runtime's fds (allocated lowest first).
        return {fd for fd in range(1024) if _is_open(fd)}
    dfd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return {int(n) for n in os.listdir(dfd)} - {dfd}
    finally:
        os.close(dfd)


@contextmanager
def no_fd_leak() -> Iterator[None]:
    """Assert that the block closes every descriptor it opens."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert leaked == set(), {fd: _describe(fd) for fd in leaked}


async def assert_no_new_fds(before: set[int]) -> None:
    """Assert that no descriptor outside ``before`` stays open.

    A worker thread abandoned by a cancelled open closes the fd it gets when
    its open(2) returns, which can be after the test's task moved on; so a
    new fd only counts as leaked if it is still there, pointing at the same
    file, after the run's threads completed and a later look.
    """
    import corral
    import corral.testing

    leaked: dict[int, str] = {}
    for _ in range(200):
        await corral.testing.wait_all_threads_completed()
        first = {fd: _describe(fd) for fd in open_fds() - before}
        await corral.sleep(0.005)
        second = {fd: _describe(fd) for fd in open_fds() - before}
        leaked = {fd: t for fd, t in first.items() if second.get(fd) == t and t != "?"}
        if not leaked:
            return
    assert leaked == {}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _describe(fd: int) -> str:
    if sys.platform == "win32":  # no /proc: the file's identity instead of its path
        try:
            st = os.fstat(fd)
        except OSError:
            return "?"
        return f"file {st.st_dev}:{st.st_ino}"
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # pragma: no cover
        return "?"


@contextmanager
def no_worker_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Assert that no worker thread runs inside the block (io_uring)."""
    from corral import _file_io, _path

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a worker thread was used: {args!r}")

    for mod in (_file_engine, _file_io, _path):
        monkeypatch.setattr(mod, "to_thread_run_sync", refuse)
    before = threading.active_count()
    yield
    assert threading.active_count() == before
