"""A process-wide cache of reusable worker threads: ``start_thread_soon``.

Starting an OS thread costs tens of microseconds; ``to_thread.run_sync`` and
guest mode hand work to threads all the time, so finished workers wait a
while for the next job instead of exiting.

How it works:

- The cache is an unbounded pool: if no worker is idle, a new one is started.
  Bounding the number of threads is the caller's business (the ``limiter``
  of ``to_thread.run_sync``).
- One cache per process, shared by every ``corral.run``.
- Idle workers sit on a stack and the newest idle worker gets the next job
  (LIFO). A few threads do most of the work and stay hot in the CPU caches,
  while the rest stay idle long enough to time out and exit.
- A worker marks itself idle *before* calling ``deliver``. A caller that
  submits the next job from inside ``deliver`` (or as soon as ``deliver``
  woke it) therefore finds this worker idle and reuses it, instead of
  starting a second thread for what is really sequential work.
- A worker that stays idle for ``IDLE_TIMEOUT`` seconds exits, unless a job
  was handed to it at the same moment (see ``_Worker._run``).
- After ``fork()`` the child has none of the parent's threads, so the idle
  stack is emptied in the child.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import traceback
from collections.abc import Callable
from contextvars import Context
from itertools import count
from typing import Any, Generic, TypeVar

import outcome

RetT = TypeVar("RetT")

#: Seconds an idle worker waits for a new job before it exits. Tests
#: monkeypatch it; the value is not critical.
IDLE_TIMEOUT: float = 10.0

# Module-level so tests can substitute a misbehaving lock (see
# tests/_core/test_thread_cache.py): the race between a worker timing out and
# a job being handed to it is otherwise nearly impossible to hit on purpose.
Lock = threading.Lock

_worker_numbers = count()


def _make_os_thread_namer() -> Callable[[int, str], None] | None:
    """Return a function that sets a thread's OS-level name (what ``top -H``,
    ``gdb`` and ``/proc/<pid>/task/*/comm`` show), or None where we cannot.

    Python's ``Thread.name`` is invisible to the OS; naming the OS thread
    makes worker threads recognisable in system tools. Linux limits the name
    to 15 bytes plus the terminating NUL (pthread_setname_np(3): ERANGE
    otherwise), so the name is truncated.
    """
    if sys.platform == "win32":  # pragma: no cover - no pthreads
        return None
    path = ctypes.util.find_library("pthread") or ctypes.util.find_library("c")
    if path is None:  # pragma: no cover - musl: the functions live in libc.so
        path = "libc.so"
    try:
        lib = ctypes.CDLL(path)
        setname = lib.pthread_setname_np
    except (OSError, AttributeError):  # pragma: no cover
        return None
    setname.restype = ctypes.c_int

    def encode(name: str) -> bytes:
        return name.encode("ascii", errors="replace")[:15]

    if sys.platform == "darwin":  # pragma: no cover - macOS names only itself
        setname.argtypes = [ctypes.c_char_p]

        def set_name_darwin(ident: int, name: str) -> None:
            setname(encode(name))

        return set_name_darwin

    setname.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    def set_name(ident: int, name: str) -> None:
        # Thread.ident is the pthread_t on POSIX.
        setname(ident, encode(name))

    return set_name


_set_os_thread_name = _make_os_thread_namer()


class _Worker(Generic[RetT]):
    """One worker thread. It runs jobs one at a time, handed over through
    ``_job`` and signalled by releasing ``_wakeup``."""

    __slots__ = ("_cache", "_default_name", "_job", "_thread", "_wakeup")

    def __init__(self, cache: ThreadCache) -> None:
        self._cache = cache
        self._job: (
            tuple[Callable[[], RetT], Callable[[outcome.Outcome[RetT]], object], str | None]
            | None
        ) = None
        # A lock used as a binary semaphore: released means "a job is
        # waiting for you". It starts held because there is no job yet.
        self._wakeup = Lock()
        self._wakeup.acquire()
        self._default_name = f"corral thread {next(_worker_numbers)}"
        kwargs: dict[str, Any] = {}
        if sys.version_info >= (3, 14):  # pragma: no cover - not yet in CI
            # 3.14 lets a Thread start in a context of our choosing; a fresh
            # one keeps the submitting thread's context variables out of
            # unrelated later jobs. (Before 3.14 a new thread always starts
            # with an empty context.)
            kwargs["context"] = Context()
        self._thread = threading.Thread(
            target=self._run, name=self._default_name, daemon=True, **kwargs
        )
        self._thread.start()
        if _set_os_thread_name is not None and self._thread.ident is not None:
            _set_os_thread_name(self._thread.ident, self._default_name)

    def _rename(self, name: str) -> None:
        self._thread.name = name
        if _set_os_thread_name is not None and self._thread.ident is not None:
            _set_os_thread_name(self._thread.ident, name)

    def _handle_job(self) -> None:
        # A separate frame, so that everything the job refers to (fn, its
        # arguments, their context variables) is released when this frame
        # ends, before the worker goes back to sleep.
        assert self._job is not None
        fn, deliver, name = self._job
        self._job = None
        if name is not None:
            self._rename(name)
        result = outcome.capture(fn)
        if name is not None:
            self._rename(self._default_name)
        # Drop fn now: deliver() may wake a task that expects fn's resources
        # to be gone, and this thread may not run again for a while.
        del fn
        # Become idle *before* delivering; see the module docstring.
        self._cache._push_idle(self)
        try:
            deliver(result)
        except BaseException as exc:
            # Nobody is there to receive it: deliver runs on our thread, with
            # no caller above it. Report it rather than killing the worker.
            print("Exception while delivering result of thread", file=sys.stderr)
            traceback.print_exception(type(exc), exc, exc.__traceback__)

    def _run(self) -> None:
        while True:
            if self._wakeup.acquire(timeout=IDLE_TIMEOUT):
                self._handle_job()
            elif self._cache._remove_idle(self):
                # Nobody can hand us a job any more: we are off the stack.
                return
            # Else a submitter popped us off the idle stack just as we timed
            # out and is about to (or did) release _wakeup: go back and take
            # the job.


class ThreadCache:
    """A pool of reusable worker threads. corral uses one per process
    (``start_thread_soon``); separate instances exist for tests."""

    __slots__ = ("_idle", "_idle_lock")

    def __init__(self) -> None:
        # Stack of idle workers, newest last. Guarded by _idle_lock, so the
        # cache does not rely on the GIL's atomicity of container operations.
        self._idle: list[_Worker[Any]] = []
        self._idle_lock = threading.Lock()

    def _push_idle(self, worker: _Worker[Any]) -> None:
        with self._idle_lock:
            self._idle.append(worker)

    def _remove_idle(self, worker: _Worker[Any]) -> bool:
        """Take ``worker`` off the idle stack; False if it was not on it."""
        with self._idle_lock:
            try:
                self._idle.remove(worker)
            except ValueError:
                return False
            return True

    def start_thread_soon(
        self,
        fn: Callable[[], RetT],
        deliver: Callable[[outcome.Outcome[RetT]], object],
        name: str | None = None,
    ) -> None:
        """See the module-level :func:`start_thread_soon`."""
        with self._idle_lock:
            worker: _Worker[RetT] | None = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
        worker._job = (fn, deliver, name)
        worker._wakeup.release()


_THREAD_CACHE = ThreadCache()


def start_thread_soon(
    fn: Callable[[], RetT],
    deliver: Callable[[outcome.Outcome[RetT]], object],
    name: str | None = None,
) -> None:
    """Call ``deliver(outcome.capture(fn))`` in a worker thread, soon.

    ``fn`` does the blocking work; ``deliver`` receives its
    :class:`outcome.Outcome` (value or exception) in the same worker thread
    and passes it on, for example with a run's ``run_sync_soon``. ``deliver``
    must not block: the worker counts as idle while it runs. If ``deliver``
    raises, the traceback is printed to stderr and the worker carries on.

    Guarantees:

    - Safe to call from any thread, several at once, with or without a run.
    - Worker threads are reused (the most recently idle one first) and
      started when none is idle; there is no upper bound, so callers bound
      their own concurrency.
    - If ``name`` is given, the worker's ``threading.Thread.name`` (and, where
      the platform allows, its OS thread name, truncated to 15 bytes) is
      ``name`` while ``fn`` runs, and its default name otherwise.
    - Workers are daemon threads: if the main thread exits, unfinished jobs
      are killed with the process. Keep the main thread alive until
      ``deliver`` ran if ``fn`` must finish.

    Because threads are reused, ``fn`` and ``deliver`` must leave
    thread-level state (``threading.local`` values) as they found it.
    """
    _THREAD_CACHE.start_thread_soon(fn, deliver, name)


def _clear_after_fork() -> None:  # pragma: no cover - runs in a forked child
    # The child has only the forking thread; the idle workers listed here do
    # not exist in it. Forget them, so the next job starts a real thread.
    # The list lock may have been held by another thread at the moment of
    # the fork: replace it rather than acquire it.
    _THREAD_CACHE._idle_lock = threading.Lock()
    _THREAD_CACHE._idle = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_clear_after_fork)
