"""corral_test (Trio's trio_test): an async function made into a sync one
that runs it in corral.run. These tests are sync on purpose: each call
starts its own run."""

from __future__ import annotations

import pytest

import corral
from corral.abc import Instrument
from corral.testing import MockClock, corral_test, trio_test


def test_runs_in_corral_and_returns_the_result() -> None:
    @corral_test
    async def double(x: int, *, y: int) -> int:
        await corral.sleep(0)
        return 2 * x + y

    assert double(20, y=2) == 42
    assert double.__name__ == "double"
    assert trio_test is corral_test


def test_clock_and_instrument_keyword_arguments_are_installed() -> None:
    class Recorder(Instrument):
        def __init__(self) -> None:
            self.calls: list[str] = []

        def before_run(self) -> None:
            self.calls.append("before_run")

    @corral_test
    async def check(clock: MockClock, recorder: Recorder) -> float:
        assert corral.lowlevel.current_clock() is clock
        assert recorder.calls == ["before_run"]
        await corral.sleep(100)
        return corral.current_time()

    recorder = Recorder()
    assert check(clock=MockClock(autojump_threshold=0), recorder=recorder) == 100
    assert recorder.calls == ["before_run"]


def test_too_many_clocks() -> None:
    @corral_test
    async def two_clocks(a: MockClock, b: MockClock) -> None:
        raise AssertionError("not reached")  # pragma: no cover

    with pytest.raises(ValueError, match=r"^too many clocks spoil the broth!$"):
        two_clocks(a=MockClock(), b=MockClock())


def test_exceptions_propagate() -> None:
    @corral_test
    async def fails() -> None:
        await corral.sleep(0)
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        fails()
