"""The cancel-safety lab's framework: sites, injection, invariants, reports,
the pytest decorator. Scenario suites over corral's own I/O are in
``test_cancel_lab_scenarios.py``."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import pytest

import corral
from corral.lowlevel import (
    RecvOp,
    RecvPoolOp,
    SendOp,
    cancel_shielded_checkpoint,
    checkpoint,
    perform,
    spawn_system_task,
)
from corral.testing import (
    ByteStreamChecker,
    CancelLab,
    CancelLabFailure,
    cancel_at_every_checkpoint,
    cancel_lab,
    cancel_randomly,
    replay_cancellation,
)
from corral.testing._cancel_lab._pytest import ENV_REPLAY, _parse_replay
from corral.testing._cancel_lab._runner import available_backends, run_once

BACKENDS = available_backends()


def socketpair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


# -- scenarios ---------------------------------------------------------------------


async def sleeper(lab: CancelLab) -> None:
    # Three cancel points that yield: two checkpoints and a sleep.
    await checkpoint()
    await corral.sleep(0)
    await checkpoint()


async def _pump(lab: CancelLab, *, careful: bool, chunks: int = 4) -> None:
    """A sender and a receiver over a socketpair; every receive is a
    cancellable region. ``careful=False`` is the classic bug: the received
    bytes are recorded only after another checkpoint, so a cancellation
    delivered there drops them."""
    a, b = socketpair()
    try:
        stream = lab.stream("pair")

        async def sender() -> None:
            for _ in range(chunks):
                view = memoryview(stream.next_chunk(100))
                while view:
                    n = await perform(SendOp(a.fileno(), view))
                    stream.sent(n)
                    view = view[n:]
            a.shutdown(socket.SHUT_WR)

        async def receiver() -> None:
            buf = bytearray(64)
            eof = False
            while not eof:
                with lab.cancellable():
                    n = await perform(RecvOp(b.fileno(), buf))
                    if careful:
                        stream.received(buf[:n])
                        await checkpoint()
                    else:
                        await checkpoint()
                        stream.received(buf[:n])
                    eof = n == 0

        async with corral.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(receiver)
        stream.finish()
    finally:
        a.close()
        b.close()


async def careful_pump(lab: CancelLab) -> None:
    await _pump(lab, careful=True)


async def careless_pump(lab: CancelLab) -> None:
    await _pump(lab, careful=False)


# -- sites and injection -----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_counting_run_records_every_site_and_cancels_nothing(backend: str) -> None:
    record = run_once(sleeper, backend=backend, record=True)
    assert record.ok, record.failure
    assert record.injected == ()
    kinds = [site.kind for site in record.recorded_sites]
    # A trap per yield (the step that enters the scenario's scope is not a
    # site: the scope is not there yet when the step starts).
    assert kinds == ["trap", "trap", "trap"]
    assert [site.index for site in record.recorded_sites] == [1, 2, 3]
    assert all(site.region == "scenario" for site in record.recorded_sites)
    # Sites name the scenario's own line, not corral's internals.
    assert record.recorded_sites[1].where.endswith("in sleeper")
    assert record.recorded_sites[1].task == "test_cancel_lab.sleeper"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_site_is_cancelled_once(backend: str) -> None:
    report = cancel_at_every_checkpoint(sleeper, backends=[backend])
    assert [len(run.injected) for run in report.runs] == [0, 1, 1, 1]
    assert [run.injected[0].index for run in report.runs[1:]] == [1, 2, 3]
    assert report.failures == []
    assert report.cancellations == 3


def test_cancel_reaches_the_task_at_its_site() -> None:
    reached: list[int] = []

    async def scenario(lab: CancelLab) -> None:
        for i in range(3):
            reached.append(i)
            await checkpoint()

    record = replay_cancellation(scenario, backend="fake", sites=[2])
    # Site k is the k-th checkpoint: the cancellation raised at the second,
    # so the third iteration never started.
    assert reached == [0, 1]
    assert [site.index for site in record.injected] == [2]


def test_regions_restrict_the_sites() -> None:
    async def scenario(lab: CancelLab) -> None:
        await checkpoint()
        with lab.cancellable() as scope:
            await checkpoint()
        await checkpoint()
        lab.check(lambda: None)
        assert scope is not None

    record = run_once(scenario, backend="fake", record=True)
    regions = [site.region for site in record.recorded_sites]
    assert regions == ["scenario", "region", "scenario"]
    report = cancel_at_every_checkpoint(scenario, backends=["fake"])
    # Only the region's site is cancelled, and the scenario goes on.
    assert [[s.index for s in run.injected] for run in report.runs] == [[], [2]]
    assert report.failures == []


def test_shielded_cancel_points_are_not_sites() -> None:
    async def scenario(lab: CancelLab) -> None:
        with corral.CancelScope(shield=True):
            await checkpoint()
            await checkpoint()

    record = run_once(scenario, backend="fake", record=True)
    assert record.recorded_sites == ()


def test_parked_perform_gets_an_in_flight_site() -> None:
    async def scenario(lab: CancelLab) -> None:
        a, b = socketpair()

        async def late_sender() -> None:
            # Outside the region: its own checkpoints are not targets.
            for _ in range(3):
                await cancel_shielded_checkpoint()
            a.send(b"late")

        try:
            async with corral.open_nursery() as nursery:
                nursery.start_soon(late_sender)
                with lab.cancellable():
                    await perform(RecvOp(b.fileno(), bytearray(10)))
        finally:
            a.close()
            b.close()

    record = run_once(
        scenario, backend="io_uring" if "io_uring" in BACKENDS else "fake", record=True
    )
    region = [site for site in record.recorded_sites if site.region == "region"]
    # Submitted, one turn in the kernel, resumed with the result.
    assert [site.kind for site in region] == ["trap", "in_flight", "step"]
    assert region[0].operation is not None and "recv op" in region[0].operation
    report = cancel_at_every_checkpoint(scenario, backends=[record.backend])
    assert [[s.kind for s in run.injected] for run in report.runs] == [
        [],
        ["trap"],
        ["in_flight"],
        ["step"],
    ]
    assert report.failures == []


# -- invariants ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_careful_receiver_passes(backend: str) -> None:
    report = cancel_at_every_checkpoint(careful_pump, backends=[backend])
    report.raise_for_failures()
    assert report.cancellations > 10


def test_careless_receiver_is_caught_with_a_replayable_report() -> None:
    report = cancel_at_every_checkpoint(careless_pump, backends=["fake"])
    failures = report.failures
    assert failures
    assert all(run.lost_bytes > 0 for run in failures)
    first = failures[0]
    text = report.describe_failure(first)
    assert "lost" in text or "never arrived" in text
    site = first.injected[0]
    assert f"k={site.index}" in text
    assert "careless_pump" in text
    assert (
        f"replay_cancellation(careless_pump, backend='fake', seed=0, sites=[{site.index}])" in text
    )
    with pytest.raises(CancelLabFailure, match="failed run"):
        report.raise_for_failures()
    # The replay reproduces it.
    with pytest.raises(CancelLabFailure, match=r"never arrived|lost"):
        replay_cancellation(careless_pump, backend="fake", seed=0, sites=[site.index])


def test_a_held_lease_is_reported() -> None:
    kept: list[Any] = []

    async def scenario(lab: CancelLab) -> None:
        a, b = socketpair()
        try:
            a.send(b"x")
            kept.append(await perform(RecvPoolOp(b.fileno())))
        finally:
            a.close()
            b.close()

    record = run_once(scenario, backend="fake")
    assert len(record.leaked_leases) == 1
    assert "still leased" in record.leaked_leases[0]
    assert record.failure is not None and "pool leases still held" in record.failure
    kept.clear()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the lab's fd census reads /proc/self/fd, which Windows lacks (no fd check there)",
)
def test_a_leaked_fd_is_reported() -> None:
    kept: list[int] = []

    async def scenario(lab: CancelLab) -> None:
        kept.append(os.open(os.devnull, os.O_RDONLY))
        await checkpoint()

    try:
        record = run_once(scenario, backend="fake")
    finally:
        for fd in kept:
            os.close(fd)
    assert kept, record
    assert record.leaked_fds == (f"fd {kept[0]} -> /dev/null",)
    assert record.failure is not None and "file descriptors leaked" in record.failure


def test_a_socket_closed_by_the_gc_is_reported() -> None:
    async def scenario(lab: CancelLab) -> None:
        socket.socket()
        await checkpoint()

    record = run_once(scenario, backend="fake")
    assert len(record.leaked_fds) == 1
    assert "closed only by the garbage collector" in record.leaked_fds[0]


def test_a_leftover_task_is_reported() -> None:
    async def forever() -> None:
        await corral.sleep_forever()

    async def scenario(lab: CancelLab) -> None:
        spawn_system_task(forever)
        await checkpoint()

    record = run_once(scenario, backend="fake")
    assert record.leaked_tasks == 1
    assert record.failure is not None and "1 task(s) still running" in record.failure


def test_scenario_errors_and_checks_fail_the_run() -> None:
    async def broken(lab: CancelLab) -> None:
        lab.check(lambda: 1 / 0)
        await checkpoint()

    record = run_once(broken, backend="fake")
    assert record.failure == "check failed: ZeroDivisionError: division by zero"
    assert isinstance(record.error, ZeroDivisionError)


# -- the byte-exact stream checker ---------------------------------------------------


def test_stream_checker_accepts_an_exact_stream() -> None:
    checker = ByteStreamChecker("s", seed=1)
    data = checker.next_chunk(10000)
    checker.sent(10000)
    checker.received(data[:3])
    checker.received(data[3:9000])
    checker.received(data[9000:])
    stats = checker.finish()
    assert stats.ok and stats.received == 10000
    checker.check()


def test_stream_checker_counts_lost_duplicated_and_corrupted_bytes() -> None:
    checker = ByteStreamChecker("s")
    data = checker.next_chunk(1000)
    checker.sent(1000)
    checker.received(data[:100])
    checker.received(data[150:300])  # 50 lost
    checker.received(data[280:400])  # 20 duplicated
    checker.received(b"\x00" * 17 + b"\x01" * 3)  # matches nothing
    stats = checker.finish()
    assert (stats.lost, stats.duplicated, stats.corrupted) == (50 + 580, 20, 20)
    with pytest.raises(AssertionError, match=r"^byte stream 's': 50 bytes lost before offset 150$"):
        checker.check()


def test_stream_checker_allows_an_uncertain_tail() -> None:
    checker = ByteStreamChecker("s")
    checker.sent(100)
    checker.send_uncertain(50)
    checker.received(checker.pattern(0, 120))
    stats = checker.finish(eof=True)
    assert stats.ok
    checker2 = ByteStreamChecker("s")
    checker2.sent(100)
    checker2.received(checker2.pattern(0, 120))
    assert checker2.finish().corrupted == 20


# -- random mode -----------------------------------------------------------------------


def test_random_mode_is_replayable_from_the_seed() -> None:
    first = cancel_randomly(careful_pump, backends=["fake"], seed=7, iterations=5, probability=0.2)
    again = cancel_randomly(careful_pump, backends=["fake"], seed=7, iterations=5, probability=0.2)

    def injected(report: Any) -> list[list[int]]:
        return [[site.index for site in run.injected] for run in report.runs]

    assert injected(first) == injected(again)
    assert [run.seed for run in first.runs] == [7, 8, 9, 10, 11]
    assert first.cancellations > 0
    first.raise_for_failures()
    one = cancel_randomly(careful_pump, backends=["fake"], seed=9, iterations=1, probability=0.2)
    assert injected(one) == injected(first)[2:3]


def test_random_mode_finds_the_careless_receiver() -> None:
    report = cancel_randomly(careless_pump, backends=["fake"], iterations=20, probability=0.3)
    assert report.failures
    assert "cancel_randomly(careless_pump, backends=['fake'], seed=" in report.describe_failure(
        report.failures[0]
    )


def test_random_mode_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"^probability must be in \[0, 1\], not 2$"):
        cancel_randomly(sleeper, probability=2)


# -- the pytest decorator ------------------------------------------------------------------


@cancel_lab(backends=["fake"], max_sites=20)
async def test_decorated_scenario_runs_under_the_lab(lab: CancelLab, tmp_path: Any) -> None:
    assert tmp_path.exists()
    await careful_pump(lab)


def test_decorator_reports_failures() -> None:
    decorated = cancel_lab(backends=["fake"])(careless_pump)
    with pytest.raises(CancelLabFailure, match="careless_pump"):
        decorated(cancel_lab_backend="fake")


def test_decorator_replays_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    async def scenario(lab: CancelLab) -> None:
        calls.append(lab.seed)
        await checkpoint()

    decorated = cancel_lab(backends=["fake"])(scenario)
    monkeypatch.setenv(ENV_REPLAY, "fake:3:2")
    decorated(cancel_lab_backend="fake")
    assert calls == [3]
    assert _parse_replay("io_uring:0:") == ("io_uring", 0, [])
    with pytest.raises(ValueError, match="must look like"):
        _parse_replay("nonsense")


def test_the_demo_finds_the_bug_and_passes_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy
    from pathlib import Path

    demo = Path(__file__).parents[2] / "examples" / "cancel_lab_demo.py"
    runpy.run_path(str(demo), run_name="__main__")
    out = capsys.readouterr().out
    assert "bytes lost before offset" in out
    assert "replay: corral.testing.replay_cancellation(unsafe" in out
    assert "no failure in" in out
