"""Shared helpers for the file API tests: running each test on every file
engine (io_uring natively, worker threads, the epoll backend when present),
and counting open descriptors."""

from __future__ import annotations

import importlib.util
import os
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
if importlib.util.find_spec("corral._io.epoll") is not None:
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
    backend = "epoll" if _current["engine"] == "epoll" else "io_uring"
    return corral.run(fn, *args, backend=backend, **kwargs)


def open_fds() -> set[int]:
    """The process's open descriptors (from /proc/self/fd)."""
    return {int(n) for n in os.listdir("/proc/self/fd")}


@contextmanager
def no_fd_leak() -> Iterator[None]:
    """Assert that the block closes every descriptor it opens."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    assert leaked == set(), {fd: _describe(fd) for fd in leaked}


def _describe(fd: int) -> str:
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
