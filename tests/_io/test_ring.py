"""Tests for the raw io_uring ring (corral._io._ring): no scheduler involved."""

from __future__ import annotations

import errno
import mmap
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral._io import _ring
from corral._io._ring import (
    RECV_MULTISHOT,
    RESERVED_USER_DATA,
    SQ_FULL,
    CqeFlag,
    Feature,
    Op,
    Ring,
    SetupFlag,
    SqeFlag,
    buffer_id,
    pin_buffer,
    unavailable_reason,
)

pytestmark = pytest.mark.skipif(
    unavailable_reason(check_kernel=True) is not None,
    reason=str(unavailable_reason(check_kernel=True)),
)

TIMEOUT = 30.0  # generous: only reached if something is broken


# Every setup tier the fallback can land on: the best one this kernel takes,
# COOP_TASKRUN (kernel refuses DEFER_TASKRUN), and no optional flags at all.
TIERS = {
    "best": 0,
    "coop": SetupFlag.DEFER_TASKRUN,
    "plain": SetupFlag.SUBMIT_ALL,
}


@pytest.fixture(params=list(TIERS))
def ring(request: pytest.FixtureRequest) -> Iterator[Ring]:
    with Ring(entries=32, refuse_setup_flags=TIERS[request.param]) as r:
        yield r


def wait_for(ring: Ring, count: int) -> list[tuple[int, int, int]]:
    """Submit and reap until ``count`` completions arrived."""
    out: list[tuple[int, int, int]] = []
    while len(out) < count:
        n = ring.submit_and_wait(1, TIMEOUT)
        out.extend(ring.completions(n))
        if n == 0:
            # Only a wakeup, a signal or the timeout end a wait with nothing.
            assert ring.statistics().enter_calls < 10_000
    return out


def prep(ring: Ring, opcode: int, **kw: int) -> None:
    """Prepare one SQE, flushing when the SQ is full (as the backend does)."""
    while (rc := ring.prep_op(opcode, **kw)) == SQ_FULL:
        ring.submit()
    assert rc == 0


# -- basics ----------------------------------------------------------------


def test_nop_round_trip_preserves_user_data(ring: Ring) -> None:
    values = [0, 1, 2**63, RESERVED_USER_DATA - 1]
    for v in values:
        prep(ring, Op.NOP, user_data=v)
    got = wait_for(ring, len(values))
    assert sorted(ud for ud, _, _ in got) == sorted(values)
    assert all(res == 0 and flags == 0 for _, res, flags in got)
    stats = ring.statistics()
    assert stats.submitted >= len(values)
    assert stats.completions == len(values)


def test_positional_prep_is_the_fast_path(ring: Ring) -> None:
    # opcode, fd, addr, len, off, op_flags, user_data, sqe_flags, ioprio,
    # buf_index, file_index, addr3
    assert ring.prep(Op.NOP, -1, 0, 0, 0, 0, 99, 0, 0, 0, 0, 0) == 0
    assert wait_for(ring, 1) == [(99, 0, 0)]


def test_short_prep_forms(ring: Ring, sockpair: tuple[socket.socket, socket.socket]) -> None:
    a, b = sockpair
    # prep_simple: opcode, fd, addr, len, off, op_flags, user_data.
    assert ring.prep_simple(Op.NOP, -1, 0, 0, 0, 0, 7) == 0
    assert wait_for(ring, 1) == [(7, 0, 0)]
    # prep_buf takes the buffer as a pointer: bytes, or ffi.from_buffer().
    assert ring.prep_buf(Op.SEND, a.fileno(), b"abc", 3, 0, 0, 8) == 0
    view = _ring._ffi.from_buffer(bytearray(b"defg"))
    assert ring.prep_buf(Op.SEND, a.fileno(), view, 4, 0, 0, 9) == 0
    # A zero-length buffer travels as address 0 (a valid empty send).
    assert ring.prep_buf(Op.SEND, a.fileno(), _ring._ffi.NULL, 0, 0, 0, 10) == 0
    assert sorted(wait_for(ring, 3)) == [(8, 3, 0), (9, 4, 0), (10, 0, 0)]
    assert b.recv(64) == b"abcdefg"
    # prep_select: IOSQE_BUFFER_SELECT from a group; the CQE names a buffer.
    slab = mmap.mmap(-1, 2 * 4096)
    br = ring.register_buf_ring(5, slab, 4096, 2)
    b.send(b"hello")
    assert ring.prep_select(Op.RECV, a.fileno(), 4096, 0, 0, 11, 0, 5) == 0
    ((ud, res, flags),) = wait_for(ring, 1)
    bid = buffer_id(flags)
    assert (ud, res) == (11, 5) and bid is not None
    assert bytes(br.buffer(bid, res)) == b"hello"
    # Same result codes as prep: the reserved user_data is refused.
    assert ring.prep_simple(Op.NOP, -1, 0, 0, 0, 0, RESERVED_USER_DATA) == -errno.EINVAL


def test_turn_is_submit_and_wait_into_the_bound_arrays() -> None:
    ring = Ring(entries=8)
    assert ring.prep_simple(Op.NOP, -1, 0, 0, 0, 0, 5) == 0
    assert ring.turn(1, 1_000_000_000) == 1
    assert ring.completions(1) == [(5, 0, 0)]
    assert ring.turn(0, 0) == 0
    ring.close()
    assert ring.turn(1, -1) == -errno.EBADF  # errors are returned, not raised


def test_timeout_op_expires_with_etime(ring: Ring) -> None:
    ts = bytearray(16)  # struct __kernel_timespec {s64 sec; s64 nsec}
    ts[8:16] = (1_000_000).to_bytes(8, "little")  # 1 ms
    addr, _, pin = pin_buffer(ts)
    prep(ring, Op.TIMEOUT, addr=addr, length=1, user_data=5)
    assert wait_for(ring, 1) == [(5, -errno.ETIME, 0)]
    del pin


def test_timeout_op_completed_by_count(ring: Ring) -> None:
    ts = bytearray(16)
    ts[0:8] = (3600).to_bytes(8, "little")
    addr, _, _pin = pin_buffer(ts)
    # off=1: complete after one other completion instead of the hour.
    prep(ring, Op.TIMEOUT, addr=addr, length=1, off=1, user_data=5)
    ring.submit()
    prep(ring, Op.NOP, user_data=6)
    got = dict((ud, res) for ud, res, _ in wait_for(ring, 2))
    assert got == {5: 0, 6: 0}


def test_submit_and_wait_timeout_returns_zero(ring: Ring) -> None:
    assert ring.submit_and_wait(1, 0.001) == 0
    assert ring.submit_and_wait(1, 0) == 0
    assert ring.submit_and_wait(0, None) == 0


# -- read / write ----------------------------------------------------------


def test_read_write_pipe(ring: Ring) -> None:
    rfd, wfd = os.pipe()
    try:
        out = b"hello ring"
        waddr, wlen, _wpin = pin_buffer(out)
        buf = bytearray(64)
        raddr, rlen, _rpin = pin_buffer(buf, writable=True)
        # The read is queued first and completes only when the write lands.
        prep(ring, Op.READ, fd=rfd, addr=raddr, length=rlen, off=2**64 - 1, user_data=1)
        ring.submit()
        prep(ring, Op.WRITE, fd=wfd, addr=waddr, length=wlen, off=2**64 - 1, user_data=2)
        got = dict((ud, res) for ud, res, _ in wait_for(ring, 2))
        assert got == {1: len(out), 2: len(out)}
        assert bytes(buf[: len(out)]) == out
    finally:
        os.close(rfd)
        os.close(wfd)


def test_read_write_file(ring: Ring, tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        data = b"x" * 100 + b"tail"
        waddr, wlen, _wpin = pin_buffer(data)
        prep(ring, Op.WRITE, fd=fd, addr=waddr, length=wlen, off=10, user_data=1)
        assert wait_for(ring, 1) == [(1, len(data), 0)]
        buf = bytearray(4)
        raddr, rlen, _rpin = pin_buffer(buf, writable=True)
        prep(ring, Op.READ, fd=fd, addr=raddr, length=rlen, off=110, user_data=2)
        assert wait_for(ring, 1) == [(2, 4, 0)]
        assert buf == b"tail"
        assert path.read_bytes() == b"\0" * 10 + data
    finally:
        os.close(fd)


def test_defer_taskrun_completion_seen_without_blocking(ring: Ring) -> None:
    # A completion that arrives while we are not in the kernel is posted as
    # task work; a non-blocking turn must still pick it up (TASKRUN_FLAG).
    rfd, wfd = os.pipe()
    try:
        buf = bytearray(8)
        addr, n, _pin = pin_buffer(buf, writable=True)
        prep(ring, Op.READ, fd=rfd, addr=addr, length=n, off=2**64 - 1, user_data=1)
        assert ring.submit_and_wait(0, 0) == 0
        os.write(wfd, b"abc")
        assert ring.submit_and_wait(0, 0) == 1
        assert ring.completions(1) == [(1, 3, 0)]
    finally:
        os.close(rfd)
        os.close(wfd)


# -- provided buffers ------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["pbuf_ring", "legacy"])
def legacy(request: pytest.FixtureRequest) -> bool:
    """Provided buffers through a PBUF_RING, or through PROVIDE_BUFFERS SQEs
    (the fallback for kernels before 5.19)."""
    return bool(request.param)


@pytest.fixture
def sockpair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def test_recv_with_provided_buffers(
    ring: Ring, sockpair: tuple[socket.socket, socket.socket], legacy: bool
) -> None:
    a, b = sockpair
    slab = mmap.mmap(-1, 4 * 4096)
    br = ring.register_buf_ring(3, slab, 4096, 4, legacy=legacy)
    assert (br.bgid, br.buf_size, br.nbufs, br.entries, br.legacy) == (3, 4096, 4, 4, legacy)

    def recv(ud: int) -> tuple[int, int, int]:
        prep(
            ring,
            Op.RECV,
            fd=a.fileno(),
            user_data=ud,
            sqe_flags=SqeFlag.BUFFER_SELECT,
            buf_index=3,
        )
        (cqe,) = wait_for(ring, 1)
        return cqe

    seen = set()
    for i in range(6):  # more receives than buffers: ids must be recycled
        payload = f"message {i}".encode()
        b.send(payload)
        ud, res, flags = recv(10 + i)
        assert (ud, res) == (10 + i, len(payload))
        bid = buffer_id(flags)
        assert bid is not None and 0 <= bid < 4
        assert bytes(br.buffer(bid, res)) == payload
        seen.add(bid)
        br.add(bid)
    assert len(seen) == 4


def test_recv_enobufs_when_ring_empty(
    ring: Ring, sockpair: tuple[socket.socket, socket.socket], legacy: bool
) -> None:
    a, b = sockpair
    slab = mmap.mmap(-1, 4096)
    br = ring.register_buf_ring(1, slab, 4096, 1, add_all=False, legacy=legacy)
    b.send(b"data")
    prep(ring, Op.RECV, fd=a.fileno(), user_data=1, sqe_flags=SqeFlag.BUFFER_SELECT, buf_index=1)
    ((ud, res, flags),) = wait_for(ring, 1)
    assert (ud, res) == (1, -errno.ENOBUFS)
    assert buffer_id(flags) is None
    # Once a buffer is given, the same data is received.
    br.add(0)
    prep(ring, Op.RECV, fd=a.fileno(), user_data=2, sqe_flags=SqeFlag.BUFFER_SELECT, buf_index=1)
    ((ud, res, flags),) = wait_for(ring, 1)
    assert (ud, res, buffer_id(flags)) == (2, 4, 0)
    assert bytes(br.buffer(0, 4)) == b"data"


def test_multishot_recv_more_then_terminal(
    ring: Ring, sockpair: tuple[socket.socket, socket.socket], legacy: bool
) -> None:
    a, b = sockpair
    slab = mmap.mmap(-1, 8 * 256)
    br = ring.register_buf_ring(2, slab, 256, 8, legacy=legacy)
    prep(
        ring,
        Op.RECV,
        fd=a.fileno(),
        user_data=77,
        sqe_flags=SqeFlag.BUFFER_SELECT,
        buf_index=2,
        ioprio=RECV_MULTISHOT,
    )
    ring.submit()
    received = []
    for i in range(3):
        b.send(b"part%d" % i)
        ((ud, res, flags),) = wait_for(ring, 1)
        assert ud == 77 and res == 5
        assert flags & CqeFlag.MORE
        bid = buffer_id(flags)
        assert bid is not None
        received.append(bytes(br.buffer(bid, res)))
        br.add(bid)
    assert received == [b"part0", b"part1", b"part2"]
    b.shutdown(socket.SHUT_WR)
    ((ud, res, flags),) = wait_for(ring, 1)
    assert (ud, res) == (77, 0)
    assert not flags & CqeFlag.MORE


def test_async_cancel_pending_recv(
    ring: Ring, sockpair: tuple[socket.socket, socket.socket]
) -> None:
    a, _b = sockpair
    buf = bytearray(16)
    addr, n, _pin = pin_buffer(buf, writable=True)
    prep(ring, Op.RECV, fd=a.fileno(), addr=addr, length=n, user_data=7)
    assert ring.submit_and_wait(0, 0) == 0
    prep(ring, Op.ASYNC_CANCEL, addr=7, user_data=8)
    got = dict((ud, res) for ud, res, _ in wait_for(ring, 2))
    assert got == {7: -errno.ECANCELED, 8: 0}
    # Cancelling something that no longer exists: -ENOENT.
    prep(ring, Op.ASYNC_CANCEL, addr=7, user_data=9)
    assert wait_for(ring, 1) == [(9, -errno.ENOENT, 0)]


def test_legacy_buffers_chosen_without_pbuf_ring(
    sockpair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = sockpair
    # A 2-entry SQ cannot hold 4 provide SQEs: the rest wait in C and are
    # flushed by later submits, never lost.
    with Ring(entries=2, refuse_buf_ring=True) as ring:
        assert not ring.info.buf_ring
        slab = mmap.mmap(-1, 4 * 64)
        br = ring.register_buf_ring(5, slab, 64, 4)
        assert br.legacy
        seen = set()
        for i in range(4):
            b.send(b"m%d" % i)
            prep(
                ring,
                Op.RECV,
                fd=a.fileno(),
                user_data=i,
                sqe_flags=SqeFlag.BUFFER_SELECT,
                buf_index=5,
            )
            ((ud, res, flags),) = wait_for(ring, 1)
            assert (ud, res) == (i, 2)
            bid = buffer_id(flags)
            assert bid is not None
            assert bytes(br.buffer(bid, 2)) == b"m%d" % i
            seen.add(bid)
        assert seen == {0, 1, 2, 3}
        # More adds than buffers while the SQ is full: refused, not overrun.
        for _ in range(2):
            assert ring.prep_op(Op.NOP, user_data=100) in (0, SQ_FULL)
        with pytest.raises(RuntimeError, match=r"more buffers added than it has"):
            for bid in [0, 1, 2, 3, 0]:
                br.add(bid)
        assert ring.statistics().provide_errors == 0
        br.close()
        wait_for(ring, 2)


# -- queue limits ----------------------------------------------------------


@pytest.mark.parametrize("batch", [4, 64])
def test_cq_overflow_loses_nothing(batch: int) -> None:
    with Ring(entries=4, cq_entries=4, batch=batch) as ring:
        assert ring.info.cq_entries == 4
        assert ring.info.features & Feature.NODROP
        submitted = 0
        got: list[int] = []
        while submitted < 64:
            rc = ring.prep_op(Op.NOP, user_data=submitted)
            if rc == SQ_FULL:
                if ring.submit() == 0:  # EBUSY: make room, then retry
                    n = ring.submit_and_wait(0, 0)
                    got.extend(ring.cqe_user_data[:n])
                continue
            assert rc == 0
            submitted += 1
        ring.submit()
        if not got:
            assert ring.sq_flags() & 2  # IORING_SQ_CQ_OVERFLOW: 60 CQEs wait
        while len(got) < 64:
            n = ring.submit_and_wait(1, TIMEOUT)
            got.extend(ring.cqe_user_data[:n])
        assert sorted(got) == list(range(64))
        assert ring.statistics().dropped == 0
        if batch > 4:  # flushed inside one call, without another turn
            assert ring.statistics().overflow_flushes > 0


def test_sq_full_returns_code_and_flush_makes_room() -> None:
    with Ring(entries=4) as ring:
        for i in range(4):
            assert ring.prep_op(Op.NOP, user_data=i) == 0
        assert ring.sq_space() == 0
        assert ring.prep_op(Op.NOP, user_data=4) == SQ_FULL
        assert ring.sq_pending() == 4
        assert ring.submit() == 4
        assert ring.sq_space() == 4
        assert ring.prep_op(Op.NOP, user_data=4) == 0
        assert sorted(ud for ud, _, _ in wait_for(ring, 5)) == [0, 1, 2, 3, 4]


def test_wakeup_rearms_when_sq_full() -> None:
    with Ring(entries=2) as ring:
        for _ in range(3):
            ring.wakeup()
            assert ring.submit_and_wait(1, TIMEOUT) == 0
        # Fill the SQ, then wake: the wait must still end on the wakeup.
        assert ring.prep_op(Op.NOP, user_data=1) == 0
        assert ring.prep_op(Op.NOP, user_data=2) == 0
        ring.wakeup()
        got = []
        while ring.statistics().wakeups < 4:
            n = ring.submit_and_wait(1, TIMEOUT)
            got.extend(ring.completions(n))
        assert ring.statistics().wakeups == 4


# -- wakeups ---------------------------------------------------------------


def _wake_later(ring: Ring, started: threading.Event) -> threading.Thread:
    def run() -> None:
        started.wait()
        time.sleep(0.05)
        ring.wakeup()

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("single_issuer", [True, False])
@pytest.mark.parametrize("tier", list(TIERS))
def test_wakeup_from_other_thread_interrupts_wait(single_issuer: bool, tier: str) -> None:
    with Ring(entries=8, single_issuer=single_issuer, refuse_setup_flags=TIERS[tier]) as ring:
        for round_ in range(3):
            started = threading.Event()
            t = _wake_later(ring, started)
            started.set()
            assert ring.submit_and_wait(1, TIMEOUT) == 0
            t.join()
            # Ended by the wakeup, not by the (much longer) timeout.
            assert ring.statistics().wakeups == round_ + 1


def test_guest_mode_waits_in_another_thread() -> None:
    with Ring(entries=8, single_issuer=False) as ring:
        # Only flags that do not tie completions to one thread.
        assert ring.info.setup_flags & ~(SetupFlag.SUBMIT_ALL | SetupFlag.CQSIZE) == 0
        results: list[int] = []

        def waiter() -> None:
            results.append(ring.submit_and_wait(1, TIMEOUT))

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.05)
        ring.wakeup()
        t.join()
        assert results == [0]
        assert ring.statistics().wakeups == 1


def test_single_issuer_ring_refuses_other_thread() -> None:
    with Ring(entries=8) as ring:
        if not ring.info.setup_flags & SetupFlag.SINGLE_ISSUER:
            pytest.skip("kernel without SINGLE_ISSUER")
        errors: list[OSError] = []

        def other() -> None:
            try:
                ring.prep_op(Op.NOP, user_data=1)
                ring.submit()
            except OSError as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert [e.errno for e in errors] == [errno.EEXIST]


def test_signal_interrupts_wait() -> None:
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        with Ring(entries=8) as ring:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            assert ring.submit_and_wait(1, TIMEOUT) == 0
            assert fired == [1]
            assert ring.statistics().interrupted == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- probing and refusal ---------------------------------------------------


def test_probe_reports_opcodes_and_features(ring: Ring) -> None:
    for op in (Op.NOP, Op.READ, Op.WRITE, Op.RECV, Op.SEND, Op.ASYNC_CANCEL, Op.POLL_ADD):
        assert ring.supports(op)
    assert not ring.supports(255)
    info = ring.info
    assert info.features & Feature.EXT_ARG
    assert info.sq_entries == 32 and info.cq_entries == 64
    assert info.buf_ring
    if info.setup_flags & SetupFlag.DEFER_TASKRUN:
        assert info.setup_flags & SetupFlag.SINGLE_ISSUER


def test_refused_setup_flags_fall_back() -> None:
    with Ring(entries=8, refuse_setup_flags=SetupFlag.DEFER_TASKRUN) as ring:
        assert not ring.info.setup_flags & SetupFlag.DEFER_TASKRUN
        assert ring.info.refused[0][1] == errno.EINVAL
        assert ring.info.refused[0][0] & SetupFlag.DEFER_TASKRUN
        prep(ring, Op.NOP, user_data=1)
        assert wait_for(ring, 1) == [(1, 0, 0)]
    with Ring(entries=8, refuse_setup_flags=SetupFlag.SUBMIT_ALL) as ring:
        assert ring.info.setup_flags & ~SetupFlag.CQSIZE == 0
        assert len(ring.info.refused) == 3


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOSYS])
def test_simulated_refusal_raises(code: int) -> None:
    with pytest.raises(OSError) as info:
        Ring(refuse_errno=code)
    assert info.value.errno == code
    assert "simulated" in str(info.value)


def test_refusal_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_ring.REFUSE_ENV, "EPERM")
    with pytest.raises(OSError) as info:
        Ring()
    assert info.value.errno == errno.EPERM
    reason = unavailable_reason(check_kernel=True)
    assert reason is not None and "refused" in reason
    assert unavailable_reason() is None  # the extension itself is fine
    monkeypatch.setenv(_ring.REFUSE_ENV, "EBOGUS")
    with pytest.raises(ValueError, match=r"EBOGUS"):
        Ring()


def test_python_opcodes_match_system_header() -> None:
    header = Path("/usr/include/linux/io_uring.h")
    if not header.exists():
        pytest.skip("no system io_uring header")
    text = header.read_text()
    body = re.search(r"enum io_uring_op \{(.*?)\};", text, re.S)
    assert body is not None
    names = re.findall(r"^\s*IORING_OP_(\w+),", body.group(1), re.M)
    names = [n for n in names if n != "LAST"]
    for value, name in enumerate(names):
        assert Op[name] == value


# -- bad input -------------------------------------------------------------


def test_closed_ring(ring: Ring) -> None:
    ring.close()
    assert ring.closed and ring.fileno() == -1
    assert ring.prep_op(Op.NOP) == -errno.EBADF
    with pytest.raises(OSError) as info:
        ring.submit_and_wait(1, 0)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError):
        ring.submit()
    ring.wakeup()  # no-op
    ring.close()  # idempotent


def test_op_on_closed_fd_completes_with_ebadf(ring: Ring) -> None:
    rfd, wfd = os.pipe()
    os.close(rfd)
    os.close(wfd)
    buf = bytearray(8)
    addr, n, _pin = pin_buffer(buf, writable=True)
    prep(ring, Op.READ, fd=rfd, addr=addr, length=n, user_data=1)
    assert wait_for(ring, 1) == [(1, -errno.EBADF, 0)]


def test_bad_arguments(ring: Ring) -> None:
    with pytest.raises(OverflowError):
        ring.prep_op(Op.READ, fd=0, length=-1)
    with pytest.raises(OverflowError):
        ring.prep_op(Op.NOP, user_data=-1)
    with pytest.raises(OverflowError):
        ring.prep_op(256)
    assert ring.prep_op(Op.NOP, user_data=RESERVED_USER_DATA) == -errno.EINVAL
    assert ring.sq_pending() == 0  # nothing was written
    # An unknown opcode is the kernel's to refuse: an error CQE, no crash.
    prep(ring, 250, user_data=3)
    assert wait_for(ring, 1) == [(3, -errno.EINVAL, 0)]
    with pytest.raises(ValueError):
        Ring(entries=0)
    with pytest.raises(ValueError):
        Ring(entries=8, cq_entries=4)
    with pytest.raises(TypeError):
        pin_buffer(b"read-only", writable=True)
    with pytest.raises(TypeError):
        pin_buffer(object())


def test_bad_buffer_ring_arguments(ring: Ring) -> None:
    slab = mmap.mmap(-1, 4096)
    with pytest.raises(ValueError, match="page-aligned"):
        ring.register_buf_ring(1, memoryview(slab)[1:], 16, 4)
    with pytest.raises(ValueError, match="slab has"):
        ring.register_buf_ring(1, slab, 4096, 2)
    with pytest.raises(ValueError):
        ring.register_buf_ring(1, slab, 16, 4, entries=3)
    with pytest.raises(ValueError):
        ring.register_buf_ring(0xFFFF, slab, 16, 4)
    br = ring.register_buf_ring(1, slab, 16, 4, add_all=False)
    with pytest.raises(ValueError, match=r"^buffer id 4 out of range 0\.\.3$"):
        br.add(4)
    with pytest.raises(OverflowError):
        br.add(-1)
    with pytest.raises(ValueError):
        br.add_range(2, 3)
    with pytest.raises(ValueError):
        br.buffer(9)
    with pytest.raises(OSError) as info:
        ring.register_buf_ring(1, mmap.mmap(-1, 4096), 16, 4)
    assert info.value.errno == errno.EEXIST
    br.close()
    with pytest.raises(OSError):
        br.add(0)
    br.close()  # idempotent
    # The group id is free again.
    ring.register_buf_ring(1, slab, 16, 4)


def test_registered_files(ring: Ring) -> None:
    rfd, wfd = os.pipe()
    try:
        ring.register_files_sparse(4)
        assert ring.update_files(2, [wfd]) == 1
        data = b"fixed"
        addr, n, _pin = pin_buffer(data)
        prep(
            ring,
            Op.WRITE,
            fd=2,
            addr=addr,
            length=n,
            off=2**64 - 1,
            user_data=1,
            sqe_flags=SqeFlag.FIXED_FILE,
        )
        assert wait_for(ring, 1) == [(1, 5, 0)]
        assert os.read(rfd, 16) == data
    finally:
        os.close(rfd)
        os.close(wfd)
