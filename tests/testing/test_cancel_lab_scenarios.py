"""The cancel-safety lab run over corral itself (bounded for CI; the long run
is ``benchmarks/cancel_lab.py``), and the race explorer."""

from __future__ import annotations

import socket

import pytest

from corral.lowlevel import RecvOp, checkpoint, perform
from corral.testing import (
    CancelLab,
    cancel_at_every_checkpoint,
    cancel_randomly,
    explore_races,
    race_schedules,
)
from corral.testing._cancel_lab._runner import available_backends
from corral.testing._cancel_lab._scenarios import SCENARIOS

BACKENDS = available_backends()

try:
    import trustme  # noqa: F401
except ImportError:  # pragma: no cover
    SCENARIO_NAMES = [name for name in SCENARIOS if name != "tls_echo"]
else:
    SCENARIO_NAMES = list(SCENARIOS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_corral_survives_cancellation_at_its_checkpoints(name: str, backend: str) -> None:
    report = cancel_at_every_checkpoint(SCENARIOS[name], backends=[backend], max_sites=25)
    report.raise_for_failures()
    assert report.cancellations >= min(25, len(report.runs) - 1) > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_corral_survives_random_cancellation(name: str, backend: str) -> None:
    report = cancel_randomly(
        SCENARIOS[name], backends=[backend], seed=1, iterations=4, probability=0.3
    )
    report.raise_for_failures()
    totals = report.totals()[0]
    assert (totals.lost_bytes, totals.duplicated_bytes, totals.canary_violations) == (0, 0, 0)


# -- the race explorer ----------------------------------------------------------------


def test_race_schedules_cover_the_contract() -> None:
    schedules = race_schedules()
    assert len(schedules) == 24
    assert schedules["submit > cancel > cancelled"] == ("cancel", "cancelled")
    assert schedules["submit > turn > complete > turn > cancel"] == (
        "turn",
        "complete",
        "turn",
        "cancel",
    )
    # "cancelled" never comes without a cancel request before it.
    for steps in schedules.values():
        if "cancelled" in steps:
            assert steps.index("cancel") < steps.index("cancelled")


async def _receive_all(lab: CancelLab, *, careful: bool) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        stream = lab.stream("race")
        a.send(stream.next_chunk(10))
        stream.sent(10)
        a.shutdown(socket.SHUT_WR)
        buf = bytearray(100)
        eof = False
        while not eof:
            with lab.cancellable():
                n = await perform(RecvOp(b.fileno(), buf))
                if not careful:
                    await checkpoint()
                stream.received(buf[:n])
                eof = n == 0
        stream.finish()
    finally:
        a.close()
        b.close()


async def careful_receive(lab: CancelLab) -> None:
    await _receive_all(lab, careful=True)


async def careless_receive(lab: CancelLab) -> None:
    await _receive_all(lab, careful=False)


def test_race_explorer_passes_a_careful_receiver() -> None:
    report = explore_races(careful_receive, kind="recv")
    assert len(report.runs) == 24
    report.raise_for_failures()
    cancelled = [run for run in report.runs if run.injected]
    assert len(cancelled) == 20
    assert all(run.injected[0].kind == "race" for run in cancelled)


def test_race_explorer_finds_the_orderings_that_lose_data() -> None:
    report = explore_races(careless_receive, kind="recv")
    failed = {run.schedule for run in report.failures}
    # Data is lost exactly when the result reached the task and the cancel
    # arrived before the task recorded it.
    assert "submit > complete > cancel" in failed
    assert "submit > cancel > complete" in failed
    assert "submit > cancel > cancelled" not in failed
    assert "submit > complete" not in failed
    text = report.describe_failure(report.failures[0])
    assert "ordering: submit >" in text


def test_race_explorer_reports_a_missing_target() -> None:
    report = explore_races(careful_receive, kind="accept", schedules=["submit > complete"])
    assert report.runs[0].failure == "[submit > complete] race target never submitted"
    with pytest.raises(ValueError, match=r"^unknown race schedule 'nope'$"):
        explore_races(careful_receive, schedules=["nope"])


@pytest.mark.parametrize("kind", ["recv_pool", "send"])
def test_race_explorer_over_corral_sockets(kind: str) -> None:
    report = explore_races(SCENARIOS["echo"], kind=kind, occurrence=2)
    report.raise_for_failures()
    assert len(report.runs) == 24


def test_race_explorer_over_tls() -> None:
    if "tls_echo" not in SCENARIO_NAMES:  # pragma: no cover
        pytest.skip("trustme is not installed")
    report = explore_races(SCENARIOS["tls_echo"], kind="recv_pool", occurrence=4)
    report.raise_for_failures()
