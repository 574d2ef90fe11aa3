"""corral.open_file / wrap_file: the same results and errors as open() for
the same operations, on every file engine (io_uring natively, worker
threads, epoll), and cancellation that never loses data or descriptors."""

from __future__ import annotations

import io
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path as SyncPath
from typing import Any

import pytest
from file_helpers import (  # noqa: F401  (file_engine: autouse fixture)
    assert_no_new_fds,
    current_engine,
    file_engine,
    no_fd_leak,
    no_worker_threads,
    open_fds,
    run_on_engine,
)

import corral
from corral.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.corral(run=run_on_engine)

Op = tuple[Any, ...]


# -- running the same operations on open() and on open_file() ---------------


def _outcome_sync(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raise", type(exc), str(exc))


async def _outcome_async(fn: Callable[[], Any]) -> Any:
    try:
        return ("ok", await fn())
    except Exception as exc:
        return ("raise", type(exc), str(exc))


def _sync_step(f: Any, op: Op) -> Callable[[], Any]:
    name, *args = op
    if name == "iter":
        return lambda: list(f)
    if name == "seek_tell":
        return lambda: f.seek(f.tell())
    if name == "readinto":
        buf = bytearray(args[0])
        return lambda: (f.readinto(buf), bytes(buf))
    if name == "attr":
        return lambda: getattr(f, args[0])
    return lambda: getattr(f, name)(*args)


def _async_step(f: Any, op: Op) -> Callable[[], Any]:
    name, *args = op
    if name == "iter":

        async def it() -> list[Any]:
            return [line async for line in f]

        return it
    if name == "seek_tell":

        async def st() -> Any:
            return await f.seek(await f.tell())

        return st
    if name == "readinto":
        buf = bytearray(args[0])

        async def ri() -> Any:
            return (await f.readinto(buf), bytes(buf))

        return ri
    if name == "attr":

        async def at() -> Any:
            return getattr(f, args[0])

        return at

    async def call() -> Any:
        return await getattr(f, name)(*args)

    return call


async def compare(
    tmp_path: SyncPath,
    content: bytes | None,
    ops: list[Op],
    open_args: tuple[Any, ...],
    open_kwargs: dict[str, Any] | None = None,
) -> None:
    """Run ``ops`` on a file opened by open() and by open_file() with the same
    arguments over identical files; results, errors and the final file
    contents must match."""
    open_kwargs = open_kwargs or {}
    sync_path, async_path = tmp_path / "sync", tmp_path / "async"
    for p in (sync_path, async_path):
        if p.exists():
            p.unlink()
        if content is not None:
            p.write_bytes(content)
    expected: list[Any] = []
    opened = _outcome_sync(lambda: open(sync_path, *open_args, **open_kwargs))
    if opened[0] == "ok":
        with opened[1] as f:
            for op in ops:
                expected.append((op, _outcome_sync(_sync_step(f, op))))
        opened = ("ok", None)
    got: list[Any] = []
    with no_fd_leak():
        aopened = await _outcome_async(
            lambda: corral.open_file(async_path, *open_args, **open_kwargs)
        )
        if aopened[0] == "ok":
            async with aopened[1] as f:
                for op in ops:
                    got.append((op, await _outcome_async(_async_step(f, op))))
            aopened = ("ok", None)

    def same_names(outcomes: Any) -> Any:
        text = repr(outcomes)
        a, s = str(async_path), str(sync_path)
        # Each repr level (an OSError's str, then this repr) doubles the
        # backslashes of a Windows path.
        for _ in range(3):
            text = text.replace(a, s)
            a, s = a.replace("\\", "\\\\"), s.replace("\\", "\\\\")
        return text

    assert same_names(aopened) == same_names(opened)
    assert same_names(got) == same_names(expected)
    if sync_path.exists():
        assert async_path.read_bytes() == sync_path.read_bytes()
    else:
        assert not async_path.exists()


TEXT = "alpha\nbeta\r\ngamma\rdelta\n\néclair ünïcode\r\n" * 700 + "tail without newline"
ENCODINGS = ["utf-8", "latin-1", "utf-16", "utf-8-sig", "cp1252"]
NEWLINES = [None, "", "\n", "\r", "\r\n"]

READ_TEXT_OPS: list[Op] = [
    ("readline",), ("readline",), ("readline",), ("read", 7), ("readline", 3),
    ("seek_tell",), ("readline",), ("read", 5000), ("seek_tell",), ("readline",),
    # (tell() after readlines(hint) raises in CPython: iteration disables it.)
    ("readlines", 200), ("iter",), ("read",), ("read", 3), ("readline",),
    ("attr", "newlines"), ("attr", "encoding"), ("attr", "mode"), ("attr", "errors"),
]  # fmt: skip


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("newline", NEWLINES)
async def test_text_read_matches_open(
    tmp_path: SyncPath, encoding: str, newline: str | None
) -> None:
    await compare(
        tmp_path, TEXT.encode(encoding), READ_TEXT_OPS, ("r",),
        {"encoding": encoding, "newline": newline},
    )  # fmt: skip


async def test_text_tell_is_the_byte_position(tmp_path: SyncPath) -> None:
    ops: list[Op] = [("tell",), ("readline",), ("tell",), ("read", 3), ("tell",), ("readline",),
                     ("tell",), ("seek", 0), ("read", 2), ("seek", 0, 2), ("tell",),
                     ("seek", 3, 1), ("seek", 3, 2), ("seek", 0, 7), ("seek", -1)]  # fmt: skip
    await compare(tmp_path, b"one\ntwo\nthree\nfour\n", ops, ("r",), {"encoding": "latin-1"})


async def test_text_read_decode_errors(tmp_path: SyncPath) -> None:
    data = b"ok\n\xff\xfe bad\n"
    await compare(tmp_path, data, [("readline",), ("readline",)], ("r",), {"encoding": "utf-8"})
    await compare(tmp_path, data, [("read",)], ("r",), {"encoding": "utf-8", "errors": "replace"})


WRITE_TEXT_OPS: list[Op] = [
    ("write", "a\nb\r\nc"), ("writelines", ["x\n", "yé\n"]), ("tell",),
    ("write", "€ maybe" * 3), ("write", b"bytes"), ("flush",), ("tell",),
]  # fmt: skip


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-8-sig", "cp1252"])
@pytest.mark.parametrize("newline", NEWLINES)
@pytest.mark.parametrize("mode", ["w", "a", "r+", "w+", "x"])
async def test_text_write_matches_open(
    tmp_path: SyncPath, encoding: str, newline: str | None, mode: str
) -> None:
    ops = WRITE_TEXT_OPS
    if "+" in mode:
        ops = [*ops, ("seek", 0), ("read",)]
    content = None if mode == "x" else "start\n".encode(encoding)
    await compare(
        tmp_path, content, ops, (mode,),
        {"encoding": encoding, "newline": newline, "errors": "replace"},
    )  # fmt: skip


BINARY = bytes(range(256)) * 40 + b"line one\nline two\n\nlast"


@pytest.mark.parametrize("buffering", [-1, 0, 7, 100000])
async def test_binary_read_matches_open(tmp_path: SyncPath, buffering: int) -> None:
    ops: list[Op] = [
        ("read", 3), ("tell",), ("readline",), ("readinto", 5), ("seek", 2), ("read", 4),
        ("seek", -30, 2), ("readline",), ("readline", 3), ("readline",), ("tell",),
        ("seek", 0, 1), ("readlines",), ("read",), ("read", 100), ("readline",),
        ("seek", 100), ("readlines", 10), ("seek", 0), ("iter",), ("seek", 5000),
        ("readall",) if buffering == 0 else ("read",), ("seek", -1), ("seek", 0, 7),
        ("read", "x"), ("read", None), ("write", b"no"), ("truncate", 0),
        ("attr", "mode"),
    ]  # fmt: skip
    await compare(tmp_path, BINARY, ops, ("rb", buffering))


@pytest.mark.parametrize("mode", ["wb", "ab", "xb", "r+b", "w+b", "a+b", "x+b"])
@pytest.mark.parametrize("buffering", [-1, 0])
async def test_binary_write_matches_open(tmp_path: SyncPath, mode: str, buffering: int) -> None:
    # (Not compared: tell() after a seek and a buffered append-mode write,
    # where CPython's BufferedWriter reports the seek target plus the bytes
    # it holds back; corral writes through and reports the end of file, as
    # io.FileIO does.)
    after_write = [] if "a" in mode and buffering else [("tell",)]
    ops: list[Op] = [
        ("write", b"hello"), ("tell",), ("seek", 2), ("write", bytearray(b"XY")), *after_write,
        ("seek", 0), ("read", 3), ("truncate", 4), ("tell",), ("seek", 0, 2),
        ("write", memoryview(b"end")), ("writelines", [b"a", b"b"]), ("seek", 1),
        ("read",), ("truncate",), ("write", "str"), ("readline",), ("flush",),
        ("attr", "mode"),
    ]  # fmt: skip
    content = None if "x" in mode else b"existing content\n"
    await compare(tmp_path, content, ops, (mode, buffering))


async def test_x_mode_on_existing_file(tmp_path: SyncPath) -> None:
    await compare(tmp_path, b"here", [], ("x",))


# -- errors -------------------------------------------------------------------


async def _error_of(fn: Callable[[], Any]) -> tuple[type[BaseException], str, Any]:
    try:
        await fn()
    except Exception as exc:
        return type(exc), str(exc), getattr(exc, "filename", None)
    raise AssertionError("no exception")


def _sync_error_of(fn: Callable[[], Any]) -> tuple[type[BaseException], str, Any]:
    try:
        fn()
    except Exception as exc:
        return type(exc), str(exc), getattr(exc, "filename", None)
    raise AssertionError("no exception")


@pytest.mark.parametrize(
    ("path", "args", "kwargs"),
    [
        ("{tmp}/missing", ("r",), {}),
        ("{tmp}/missing/sub", ("w",), {}),
        ("{tmp}", ("r",), {}),
        ("{tmp}", ("rb",), {}),
        ("{tmp}", ("w",), {}),
        ("/proc/sys/kernel/version", ("w",), {}),
        ("{tmp}/f", ("rw",), {}),
        ("{tmp}/f", ("rr",), {}),
        ("{tmp}/f", ("",), {}),
        ("{tmp}/f", ("rbt",), {}),
        ("{tmp}/f", ("U",), {}),
        ("{tmp}/f", (5,), {}),
        ("{tmp}/f", ("rb",), {"encoding": "utf-8"}),
        ("{tmp}/f", ("rb",), {"errors": "strict"}),
        ("{tmp}/f", ("rb",), {"newline": ""}),
        ("{tmp}/f", ("r", 0), {}),
        ("{tmp}/f", ("r",), {"newline": "x"}),
        ("{tmp}/f", ("r",), {"newline": 5}),
        ("{tmp}/f", ("r",), {"encoding": "bogus"}),
        ("{tmp}/f", ("r",), {"encoding": "hex"}),
        ("{tmp}/missing", ("r",), {"encoding": "bogus"}),
        ("{tmp}/f", ("r",), {"closefd": False}),
        ("{tmp}/f\0x", ("r",), {}),
        ("{tmp}/f", ("r", "x"), {}),
    ],
)
async def test_open_errors_match_open(
    tmp_path: SyncPath, path: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    (tmp_path / "f").write_text("x")
    target = path.format(tmp=tmp_path)
    with no_fd_leak():
        expected = _sync_error_of(lambda: open(target, *args, **kwargs))
        got = await _error_of(lambda: corral.open_file(target, *args, **kwargs))
    assert got == expected


async def test_open_error_filenames_keep_their_type(tmp_path: SyncPath) -> None:
    for name in (str(tmp_path / "nope"), os.fsencode(tmp_path / "nope"), tmp_path / "nope"):
        expected = _sync_error_of(lambda name=name: open(name))  # type: ignore[misc]
        got = await _error_of(lambda name=name: corral.open_file(name))  # type: ignore[misc]
        assert got == expected


async def test_bad_file_arguments() -> None:
    for bad in ([1], -1, 3.5):
        expected = _sync_error_of(lambda bad=bad: open(bad))  # type: ignore[misc]
        got = await _error_of(lambda bad=bad: corral.open_file(bad))  # type: ignore[misc]
        assert got == expected


CLOSED_OPS: list[Op] = [
    ("read",), ("read", 1), ("readline",), ("readlines",), ("write", None), ("seek", 0),
    ("tell",), ("flush",), ("truncate", 0), ("iter",),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "buffering"),
    [("r", -1), ("w", -1), ("rb", -1), ("wb", -1), ("r+b", -1), ("rb", 0), ("wb", 0)],
)
async def test_closed_file_errors_match_open(tmp_path: SyncPath, mode: str, buffering: int) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"data\n")
    data = b"x" if "b" in mode else "x"
    ops = [("write", data) if op[0] == "write" else op for op in CLOSED_OPS]
    f = open(p, mode, buffering)
    f.close()
    expected = [_outcome_sync(_sync_step(f, op)) for op in ops]
    af = await corral.open_file(p, mode, buffering)
    await af.aclose()
    await af.aclose()  # idempotent
    got = [await _outcome_async(_async_step(af, op)) for op in ops]
    assert got == expected
    assert af.closed


# -- cancellation ---------------------------------------------------------------


async def test_cancelled_open_does_nothing(tmp_path: SyncPath) -> None:
    target = tmp_path / "new"
    with no_fd_leak():
        with corral.CancelScope() as scope:
            scope.cancel()
            await corral.open_file(target, "w")
        assert scope.cancelled_caught
    assert not target.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="Windows has no FIFOs (os.mkfifo)")
async def test_cancelled_blocked_open_is_interrupted_without_leak(tmp_path: SyncPath) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    before = open_fds()
    async with corral.open_nursery() as nursery:
        scope = corral.CancelScope()

        async def opener() -> None:
            with scope:
                f = await corral.open_file(fifo, "rb")
                await f.aclose()
            if current_engine() != "io_uring":
                # open(2) of a FIFO waits for a writer, in the worker thread.
                assert scope.cancelled_caught
            # io_uring's openat first tries the open inline with O_NONBLOCK
            # (io_openat2 under IO_URING_F_NONBLOCK), which opens a FIFO for
            # reading at once: whether the cancel wins is a race, and either
            # way nothing leaks.

        def worker_busy() -> bool:
            # The thread cache names a worker after the task while it runs
            # the job, so the name says whether the open() has returned.
            return any(".opener" in t.name for t in threading.enumerate())

        nursery.start_soon(opener)
        await wait_all_tasks_blocked()
        if current_engine() != "io_uring":
            while not worker_busy():
                await corral.sleep(0.001)
        scope.cancel()
    # A worker thread stuck in open() returns once a writer shows up; the fd
    # it then gets is closed, not leaked. Keep offering a writer until the
    # worker is done (it may not have entered open() yet: then O_NONBLOCK
    # fails with ENXIO and we try again).
    for _ in range(2000):
        if not worker_busy():
            break
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            pass
        else:
            os.close(fd)
        await corral.sleep(0.005)
    assert not worker_busy()
    # The abandoned worker closes its fd when its open() returns.
    await assert_no_new_fds(before)


async def test_open_racing_its_cancel_never_leaks(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x" * 100)
    rng = random.Random(0)
    before = open_fds()
    for _ in range(60):
        async with corral.open_nursery() as nursery:
            scope = corral.CancelScope()

            async def reader(scope: corral.CancelScope) -> None:
                with scope:
                    async with await corral.open_file(target, "rb") as f:
                        await f.read()

            async def canceller(scope: corral.CancelScope, delay: int) -> None:
                for _ in range(delay):
                    await corral.lowlevel.checkpoint()
                scope.cancel()

            nursery.start_soon(reader, scope)
            nursery.start_soon(canceller, scope, rng.randrange(6))
    await assert_no_new_fds(before)


async def test_cancelled_read_keeps_position(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"0123456789")
    async with await corral.open_file(target, "rb") as f:
        assert await f.read(2) == b"01"
        with corral.CancelScope() as scope:
            scope.cancel()
            await f.read(3)
        assert scope.cancelled_caught
        assert await f.tell() == 2
        assert await f.read(3) == b"234"
    async with await corral.open_file(target, "r") as t:
        assert await t.read(2) == "01"
        with corral.CancelScope() as scope:
            scope.cancel()
            await t.readline()
        assert await t.read() == "23456789"


@pytest.mark.parametrize("text", [False, True])
async def test_read_cancelled_between_kernel_reads_loses_nothing(text: bool) -> None:
    r, w = os.pipe()
    f: Any = await corral.open_file(r, "r" if text else "rb")
    try:
        os.write(w, b"abc")
        scope = corral.CancelScope()
        async with corral.open_nursery() as nursery:

            async def reader() -> None:
                with scope:
                    # The first kernel read returns b"abc"; the second waits.
                    await f.read(10)
                assert scope.cancelled_caught

            nursery.start_soon(reader)
            await wait_all_tasks_blocked()
            scope.cancel()
            # A read blocked in a worker thread returns when data arrives.
            os.write(w, b"def")
        got = await f.read(6)
        assert got == ("abcdef" if text else b"abcdef")
    finally:
        await f.aclose()
        os.close(w)


async def test_aclose_is_shielded(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x")
    with no_fd_leak():
        f = await corral.open_file(target, "rb")
        with corral.CancelScope() as scope:
            scope.cancel()
            await f.aclose()
        assert scope.cancelled_caught
        assert f.closed


async def test_write_in_cancelled_scope_writes_nothing(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    async with await corral.open_file(target, "wb") as f:
        with corral.CancelScope() as scope:
            scope.cancel()
            await f.write(b"never")
        assert scope.cancelled_caught
        await f.write(b"ok")
    assert target.read_bytes() == b"ok"


# -- io_uring does it without threads ---------------------------------------------


async def test_no_worker_thread_on_io_uring(
    tmp_path: SyncPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    if current_engine() != "io_uring":
        pytest.skip("io_uring only (a Linux kernel interface)")
    paths = [tmp_path / f"f{i}" for i in range(20)]
    with no_worker_threads(monkeypatch), no_fd_leak():

        async def one(p: SyncPath) -> None:
            async with await corral.open_file(p, "w+b") as f:
                await f.write(b"data" * 100)
                await f.seek(0)
                assert await f.read() == b"data" * 100
                assert (await f.stat()).st_size == 400
                await f.truncate(3)
                await f.fsync()
            async with await corral.open_file(p, encoding="ascii") as t:
                assert await t.read() == "dat"

        async with corral.open_nursery() as nursery:
            for p in paths:
                nursery.start_soon(one, p)


# -- misc behaviour ---------------------------------------------------------------------


async def test_append_mode_tracks_the_end(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"abc")
    async with await corral.open_file(target, "a+b") as f:
        assert await f.tell() == 3
        await f.seek(0)
        assert await f.read(1) == b"a"
        await f.write(b"de")
        assert await f.tell() == 5
        await f.seek(0)
        assert await f.read() == b"abcde"


async def test_fileno_and_sync_attributes(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"abcdef")
    async with await corral.open_file(target, "rb") as f:
        assert await f.read(2) == b"ab"
        fd = f.fileno()
        assert os.read(fd, 2) == b"cd"
        assert f.readable() and not f.writable() and f.seekable() and not f.isatty()
        assert f.name == str(target)
        assert (await f.stat()).st_size == 6
    async with await corral.open_file(target) as t:
        assert t.buffer.mode == "rb" and t.line_buffering is False
        assert isinstance(t.fileno(), int)


async def test_concurrent_reads_are_serialized(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"".join(b"%05d\n" % i for i in range(2000)))
    lines: list[bytes] = []
    async with await corral.open_file(target, "rb") as f:

        async def reader() -> None:
            while line := await f.readline():
                lines.append(line)

        async with corral.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(reader)
    assert sorted(lines) == [b"%05d\n" % i for i in range(2000)]


async def test_open_fd_and_closefd_false(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"hello")
    fd = os.open(target, os.O_RDONLY)
    try:
        f = await corral.open_file(fd, "rb", closefd=False)
        assert f.name == fd
        assert await f.read() == b"hello"
        await f.aclose()
        os.fstat(fd)  # still open
    finally:
        os.close(fd)


async def test_opener(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"hello")
    calls = []

    def opener(path: str, flags: int) -> int:
        calls.append((path, flags))
        return os.open(path, flags)

    async with await corral.open_file(target, "rb", opener=opener) as f:
        assert await f.read() == b"hello"
    assert calls == [
        (str(target), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    ]


async def test_detach(tmp_path: SyncPath) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"hello world")
    t = await corral.open_file(target)
    assert await t.read(2) == "he"
    b = await t.detach()
    with pytest.raises(ValueError, match=r"^underlying buffer has been detached$"):
        t.fileno()
    await b.aclose()


# -- wrap_file ----------------------------------------------------------------------


async def test_wrap_file() -> None:
    f = corral.wrap_file(io.StringIO("one\ntwo\n"))
    assert await f.readline() == "one\n"
    assert [line async for line in f] == ["two\n"]
    assert f.closed is False
    assert "read" in dir(f)
    await f.aclose()
    assert f.wrapped.closed


async def test_wrap_file_rejects_non_files() -> None:
    with pytest.raises(
        TypeError,
        match=r"^1 does not implement required duck-file methods: close and \(read or write\)$",
    ):
        corral.wrap_file(1)


async def test_wrap_file_runs_in_a_thread() -> None:
    seen: list[threading.Thread] = []

    class Probe(io.StringIO):
        def read(self, size: int | None = -1) -> str:
            seen.append(threading.current_thread())
            return super().read(size)

    f = corral.wrap_file(Probe("x"))
    assert await f.read() == "x"
    assert seen and seen[0] is not threading.current_thread()
    b = await corral.wrap_file(io.BufferedReader(io.BytesIO(b"ab"))).detach()
    assert isinstance(b.wrapped, io.BytesIO)
