"""Tests for corral._core._thread_cache (start_thread_soon)."""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Queue
from typing import Any, NoReturn

import outcome
import pytest

from corral._core import _thread_cache
from corral._core._thread_cache import ThreadCache, start_thread_soon


@contextmanager
def _join_new_threads() -> Iterator[None]:
    before = frozenset(threading.enumerate())
    try:
        yield
    finally:
        for thread in threading.enumerate():
            if thread not in before:
                thread.join(timeout=5.0)
                assert not thread.is_alive()


def test_value_and_error_are_delivered() -> None:
    q: Queue[outcome.Outcome[Any]] = Queue()

    def boom() -> NoReturn:
        raise RuntimeError("hi")

    start_thread_soon(boom, q.put)
    with pytest.raises(RuntimeError, match=r"^hi$"):
        q.get(timeout=10).unwrap()

    start_thread_soon(lambda: 42, q.put)
    assert q.get(timeout=10).unwrap() == 42


def test_fn_is_released_before_deliver() -> None:
    collected = threading.Event()

    class Job:
        def __call__(self) -> int:
            return 7

        def __del__(self) -> None:
            collected.set()

    seen: list[bool] = []
    done = threading.Event()

    def deliver(result: outcome.Outcome[int]) -> None:
        gc.collect()
        seen.append(collected.is_set())
        done.set()

    start_thread_soon(Job(), deliver)
    assert done.wait(10)
    assert seen == [True]


def test_runs_in_a_worker_thread_with_name() -> None:
    q: Queue[tuple[threading.Thread, str]] = Queue()

    def fn() -> None:
        t = threading.current_thread()
        q.put((t, t.name))

    start_thread_soon(fn, lambda _: None, name="custom-name")
    thread, name = q.get(timeout=10)
    assert thread is not threading.main_thread()
    assert thread.daemon
    assert name == "custom-name"

    if sys.platform == "linux":
        # The OS-level name is set too (truncated to 15 bytes).
        names: Queue[str] = Queue()

        def read_comm() -> None:
            tid = threading.get_native_id()
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.put(f.read().strip())

        start_thread_soon(read_comm, lambda _: None, name="a-rather-long-thread-name")
        assert names.get(timeout=10) == "a-rather-long-t"


def test_name_is_restored_after_job(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ThreadCache()
    names: Queue[str] = Queue()
    done: Queue[object] = Queue()
    with _join_new_threads():
        cache.start_thread_soon(lambda: None, done.put, name="temporary")
        done.get(timeout=10)
        cache.start_thread_soon(lambda: names.put(threading.current_thread().name), done.put)
        done.get(timeout=10)
        name = names.get(timeout=10)
        assert name.startswith("corral thread ")
        # Let the worker exit so the context manager can join it.
        monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.0001)
        cache.start_thread_soon(lambda: None, lambda _: None)


def test_submitting_from_deliver_reuses_the_same_thread() -> None:
    # Several idle threads exist; work chained from deliver must keep landing
    # on the thread that just finished (LIFO + idle-before-deliver).
    cache = ThreadCache()
    q: Queue[object] = Queue()
    release = threading.Event()
    for _ in range(4):
        cache.start_thread_soon(release.wait, q.put)
    release.set()
    for _ in range(4):
        q.get(timeout=10)

    seen: set[threading.Thread] = set()
    finished = threading.Event()

    def step(n: int) -> None:
        seen.add(threading.current_thread())
        if n == 0:
            finished.set()
        else:
            cache.start_thread_soon(lambda: None, lambda _: step(n - 1))

    cache.start_thread_soon(lambda: None, lambda _: step(10))
    assert finished.wait(10)
    assert len(seen) == 1


def test_sequential_jobs_from_outside_reuse_one_thread() -> None:
    cache = ThreadCache()
    q: Queue[threading.Thread] = Queue()
    threads = set()
    for _ in range(20):
        cache.start_thread_soon(threading.current_thread, lambda r: q.put(r.unwrap()))
        threads.add(q.get(timeout=10))
    assert len(threads) == 1


def test_idle_threads_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.0001)
    q: Queue[threading.Thread] = Queue()
    start_thread_soon(threading.current_thread, lambda r: q.put(r.unwrap()))
    thread = q.get(timeout=10)
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_race_between_idle_exit_and_job_assignment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A lock that, the first few times it is acquired with a timeout, waits
    # until it is available and then claims it timed out. The worker thus
    # "times out" although a job was just handed to it: it must notice that
    # it is no longer on the idle stack and go back for the job.
    class LyingLock:
        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._lies_left = 3

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            got = self._lock.acquire(timeout=timeout)
            if timeout == -1:
                return True
            if got and self._lies_left > 0:
                self._lies_left -= 1
                self._lock.release()
                return False
            return got

        def release(self) -> None:
            self._lock.release()

    monkeypatch.setattr(_thread_cache, "Lock", LyingLock)
    with _join_new_threads():
        cache = ThreadCache()
        done = threading.Event()
        cache.start_thread_soon(lambda: None, lambda _: done.set())
        assert done.wait(10)
        done.clear()
        cache.start_thread_soon(lambda: None, lambda _: done.set())
        assert done.wait(10)
        # Make the worker exit so the context manager can join it.
        monkeypatch.setattr(_thread_cache, "IDLE_TIMEOUT", 0.0001)
        cache.start_thread_soon(lambda: None, lambda _: None)


def test_raise_in_deliver_is_printed_and_worker_survives(
    capfd: pytest.CaptureFixture[str],
) -> None:
    cache = ThreadCache()
    threads: set[threading.Thread] = set()
    done = threading.Event()

    def track() -> None:
        threads.add(threading.current_thread())

    def bad_deliver(_: object) -> NoReturn:
        done.set()
        raise RuntimeError("don't do this")

    cache.start_thread_soon(track, bad_deliver)
    assert done.wait(10)
    done = threading.Event()
    cache.start_thread_soon(track, lambda _: done.set())
    assert done.wait(10)
    assert len(threads) == 1
    err = capfd.readouterr().err
    assert "don't do this" in err
    assert "Exception while delivering result of thread" in err


def test_concurrent_submitters() -> None:
    q: Queue[int] = Queue()

    def submit(base: int) -> None:
        for i in range(50):
            start_thread_soon(lambda i=i: base + i, lambda r: q.put(r.unwrap()))

    submitters = [threading.Thread(target=submit, args=(k * 1000,)) for k in range(4)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    got = sorted(q.get(timeout=10) for _ in range(200))
    assert got == sorted(k * 1000 + i for k in range(4) for i in range(50))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_cache_works_in_forked_child() -> None:
    done = threading.Event()
    start_thread_soon(lambda: None, lambda _: done.set())
    assert done.wait(10)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = threading.Event()
        start_thread_soon(lambda: None, lambda _: ok.set())
        os._exit(0 if ok.wait(10) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
