"""The I/O-manager interface, and the minimal manager used when no backend is
given.

The scheduler knows nothing about I/O except this interface. Each loop turn it
calls ``get_events(timeout)`` (in a worker thread in guest mode), then
``process_events(batch)`` in the run thread. Anything that must wake a blocked
``get_events`` early (another thread calling ``CorralToken.run_sync_soon``, a
signal handler, a guest-mode host changing a deadline) calls
``force_wakeup()``.

The batch returned by ``get_events`` is opaque to the scheduler except for its
truth value: it must be falsy exactly when the wait ended because the timeout
elapsed with nothing to report (no completion, no wakeup). The scheduler uses
that to decide whether the run is idle (``wait_all_tasks_blocked``, the
autojump clock).

The completion core (``corral._io``) supplies its own manager through
``run(..., io_manager_factory=...)``; ``_core`` never imports it. The factory
is called as ``factory(guest=bool)``, plus ``install_wakeup_fd=bool`` when
that differs from its default ``not guest`` (a guest run whose host does not
use :func:`signal.set_wakeup_fd`): see :func:`make_io_manager`.
"""

from __future__ import annotations

import math
import select
import signal
import socket
import threading
import warnings
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs


@runtime_checkable
class IOManager(Protocol):
    """What the scheduler needs from an I/O backend."""

    def get_events(self, timeout: float) -> object:
        """Flush pending submissions, then wait up to ``timeout`` seconds for
        completions or a wakeup. ``0`` means poll; the scheduler never passes
        ``inf`` (it caps the timeout at 24 hours). Returns an opaque batch that
        is falsy iff nothing happened. In guest mode this runs in a worker
        thread while no task runs."""
        ...

    def process_events(self, events: object) -> None:
        """In the run thread: complete the batch (reschedule tasks)."""
        ...

    def force_wakeup(self) -> None:
        """Thread-safe and signal-safe: make a blocked ``get_events`` return
        soon (its batch is then truthy)."""
        ...

    def close(self) -> None:
        """At the end of the run, also after a crash: cancel what is still in
        flight, reap until nothing is, then free memory. Idempotent."""
        ...

    def statistics(self) -> object:
        """Backend statistics; the object has at least a ``backend`` string
        attribute."""
        ...


@attrs.frozen
class MinimalIOStatistics:
    """Statistics of the minimal manager: it only sleeps and wakes."""

    backend: str = "minimal"
    #: How many wakeups (``force_wakeup`` calls, signals) have been consumed.
    wakeups_processed: int = 0


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class MinimalIOManager:
    """Sleeps until a timeout or a wakeup; performs no I/O.

    A wakeup is one byte written to a socketpair that ``get_events`` polls.
    When ``install_wakeup_fd`` is true (by default: when the run is not a
    guest run) and the run owns the main thread, the write end is also
    installed with :func:`signal.set_wakeup_fd`, so a signal that arrives
    just before the poll starts still wakes it (the Python-level handler only
    runs later, between bytecodes).
    """

    def __init__(self, *, guest: bool = False, install_wakeup_fd: bool | None = None) -> None:
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        # Windows has no select.poll; select.select works on its sockets.
        self._poll = select.poll() if hasattr(select, "poll") else None
        if self._poll is not None:
            self._poll.register(self._rsock.fileno(), select.POLLIN)
        # Set by force_wakeup before it writes, so that a zero-timeout poll can
        # skip the syscall when nobody asked for a wakeup. A byte written by
        # the C-level signal wakeup does not set it, but it stays in the
        # socket and the next blocking wait returns at once.
        self._wakeup_pending = False
        self._wakeups = 0
        self._closed = False
        self._old_wakeup_fd: int | None = None
        if install_wakeup_fd is None:
            install_wakeup_fd = not guest
        if install_wakeup_fd and _is_main_thread():
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._wsock.fileno(), warn_on_full_buffer=False
            )
            if self._old_wakeup_fd != -1:
                warnings.warn(
                    RuntimeWarning(
                        "It looks like corral's signal handling code might have "
                        "collided with another library you're using. If you're "
                        "running corral in guest mode, then this might mean you "
                        "should set host_uses_signal_set_wakeup_fd=True. "
                        "Otherwise, file a bug on corral and we'll help you figure "
                        "out what's going on."
                    ),
                    stacklevel=1,
                )

    def get_events(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for a wakeup; return how many wakeup
        bytes were drained (0 when the timeout elapsed)."""
        if timeout <= 0 and not self._wakeup_pending:
            return 0
        self._wakeup_pending = False
        # poll() takes whole milliseconds: round up so that we never wake
        # before the deadline and spin.
        ms = math.ceil(timeout * 1000) if timeout > 0 else 0
        if self._poll is not None:
            if not self._poll.poll(ms):
                return 0
        elif not select.select([self._rsock], [], [], ms / 1000)[0]:
            return 0
        drained = 0
        while True:
            try:
                data = self._rsock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            drained += len(data)
            if not data:  # pragma: no cover - peer closed; cannot happen while open
                break
        return drained or 1

    def process_events(self, events: object) -> None:
        """Nothing to complete: a wakeup carries no payload."""
        if events:
            self._wakeups += 1

    def force_wakeup(self) -> None:
        """Make a blocked or upcoming ``get_events`` return promptly."""
        self._wakeup_pending = True
        try:
            self._wsock.send(b"\x00")
        except (BlockingIOError, OSError):
            # Buffer full (a wakeup is already pending) or closed at the end
            # of the run: either way there is nothing more to do.
            pass

    def close(self) -> None:
        """Restore the previous signal wakeup fd and close the socketpair."""
        if self._closed:
            return
        self._closed = True
        if self._old_wakeup_fd is not None and _is_main_thread():
            signal.set_wakeup_fd(self._old_wakeup_fd)
        self._rsock.close()
        self._wsock.close()

    def statistics(self) -> MinimalIOStatistics:
        """Return :class:`MinimalIOStatistics`."""
        return MinimalIOStatistics(wakeups_processed=self._wakeups)


def make_io_manager(
    factory: Callable[..., IOManager] | None, *, guest: bool, install_wakeup_fd: bool
) -> IOManager:
    """Build the run's I/O manager.

    ``install_wakeup_fd``: the manager should install its wakeup socket with
    :func:`signal.set_wakeup_fd` (main thread only), so that a signal wakes
    a blocked wait. True for ordinary runs; for guest runs, true unless the
    host uses ``set_wakeup_fd`` itself (``host_uses_signal_set_wakeup_fd``).

    The keyword is passed only when it differs from ``not guest``, the
    choice every manager made before the keyword existed: a factory written
    for the one-argument call ``factory(guest=...)`` keeps working for every
    run it could serve before.
    """
    if factory is None:
        return MinimalIOManager(guest=guest, install_wakeup_fd=install_wakeup_fd)
    if install_wakeup_fd == (not guest):
        return factory(guest=guest)
    return factory(guest=guest, install_wakeup_fd=install_wakeup_fd)
