"""Guest mode and signal.set_wakeup_fd: corral installs its own wakeup fd
unless the host says it uses one (``host_uses_signal_set_wakeup_fd``), as
Trio does."""

from __future__ import annotations

import queue
import signal
import socket
import threading
import warnings
from typing import Any

import pytest

import corral._core as core
from corral._io._select import make_io_manager_factory

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal.set_wakeup_fd needs the main thread",
)

BACKENDS = ["minimal", "io_uring", "epoll", "fake"]


def factory_for(backend: str) -> Any:
    if backend == "minimal":
        return None
    factory = make_io_manager_factory(backend)

    def checked(**kwargs: Any) -> Any:
        try:
            return factory(**kwargs)
        except OSError:  # pragma: no cover
            pytest.skip(f"{backend} is not available here")

    return checked


def current_wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def guest_run(backend: str, **kwargs: Any) -> int:
    """Run a guest on a minimal host loop; return the wakeup fd it saw."""
    todo: queue.Queue[Any] = queue.Queue()
    done: list[Any] = []

    async def main() -> int:
        return current_wakeup_fd()

    core.start_guest_run(
        main,
        run_sync_soon_threadsafe=todo.put,
        done_callback=done.append,
        io_manager_factory=factory_for(backend),
        **kwargs,
    )
    while not done:
        todo.get(timeout=10)()
    return int(done[0].unwrap())


@pytest.mark.parametrize("backend", BACKENDS)
def test_guest_installs_a_wakeup_fd_unless_told_the_host_uses_one(backend: str) -> None:
    assert current_wakeup_fd() == -1
    # The default, as in Trio: corral handles signals with its own fd.
    assert guest_run(backend) != -1
    assert current_wakeup_fd() == -1
    assert guest_run(backend, host_uses_signal_set_wakeup_fd=False) != -1
    assert current_wakeup_fd() == -1


@pytest.mark.parametrize("backend", BACKENDS)
def test_guest_leaves_the_hosts_wakeup_fd_alone(backend: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        signal.set_wakeup_fd(a.fileno())
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                seen = guest_run(backend, host_uses_signal_set_wakeup_fd=True)
            assert seen == a.fileno()
            assert current_wakeup_fd() == a.fileno()
        finally:
            signal.set_wakeup_fd(-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_guest_warns_when_its_wakeup_fd_collides_with_the_hosts(backend: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        signal.set_wakeup_fd(a.fileno())
        try:
            with pytest.warns(RuntimeWarning, match="host_uses_signal_set_wakeup_fd=True"):
                seen = guest_run(backend)
            assert seen not in (-1, a.fileno())
            # Restored at the end of the run.
            assert current_wakeup_fd() == a.fileno()
        finally:
            signal.set_wakeup_fd(-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ordinary_run_installs_a_wakeup_fd(backend: str) -> None:
    async def main() -> int:
        return current_wakeup_fd()

    assert core.run(main, io_manager_factory=factory_for(backend)) != -1
    assert current_wakeup_fd() == -1


def test_a_factory_that_only_knows_guest_still_works() -> None:
    # Factories written for the one-argument call: the core passes
    # install_wakeup_fd only when it differs from "not guest".
    from corral._core._io_manager import MinimalIOManager

    calls: list[bool] = []

    def old_factory(guest: bool) -> MinimalIOManager:
        calls.append(guest)
        return MinimalIOManager(guest=guest)

    async def main() -> None:
        pass

    core.run(main, io_manager_factory=old_factory)
    todo: queue.Queue[Any] = queue.Queue()
    done: list[Any] = []
    core.start_guest_run(
        main,
        run_sync_soon_threadsafe=todo.put,
        done_callback=done.append,
        io_manager_factory=old_factory,
        host_uses_signal_set_wakeup_fd=True,
    )
    while not done:
        todo.get(timeout=10)()
    done[0].unwrap()
    assert calls == [False, True]
