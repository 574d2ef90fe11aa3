"""Helpers for the completion-core tests: which backends exist here, and
running a function on a chosen one."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from corral._core import run as core_run
from corral._io import _ring
from corral._io._select import make_io_manager_factory


def available_backends() -> list[str]:
    """Every backend that can start on this machine."""
    names = []
    if _ring.unavailable_reason(check_kernel=True) is None:
        names.append("io_uring")
    if (
        sys.platform.startswith("linux")
        and importlib.util.find_spec("corral._io.epoll") is not None
    ):
        names.append("epoll")
    if sys.platform == "win32":
        names += ["iocp", "afd"]
    names.append("fake")
    return names


BACKENDS = available_backends()
REAL_BACKENDS = [b for b in BACKENDS if b != "fake"]


def close_fd(fd: int) -> None:
    """Close an fd an op returned (an accepted connection): a socket handle
    on Windows, where ``os.close`` only knows C runtime fds."""
    if sys.platform == "win32":
        import socket

        socket.socket(fileno=fd).close()
    else:
        os.close(fd)


def interrupt_main_soon(delay: float) -> None:
    """Deliver SIGINT to this process after ``delay`` seconds, from a thread.
    (On Windows ``os.kill(pid, SIGINT)`` terminates the process; raising the
    signal runs the C handler, which trips Python's flag and the wakeup fd.)"""
    import signal
    import threading

    if sys.platform == "win32":
        threading.Timer(delay, signal.raise_signal, (signal.SIGINT,)).start()
    else:
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()


def run_on(backend: str, fn: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
    """``corral._core.run(fn, *args)`` on ``backend`` (debug canaries on
    unless ``debug=False``), with backend options such as ``entries``."""
    debug = options.pop("debug", True)
    buffer_size = options.pop("buffer_size", 4096)
    buffers = options.pop("buffers", 16)
    if backend == "fake":
        # Generic tests cancel things; the fake honours cancels by itself
        # unless a test scripts the race (tests/_io/test_fake.py).
        options.setdefault("auto_cancel", True)
    factory = make_io_manager_factory(
        backend, debug=debug, buffer_size=buffer_size, buffers=buffers, **options
    )
    return core_run(fn, *args, io_manager_factory=factory)
