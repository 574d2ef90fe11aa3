"""Instruments: the nine hooks, add/remove, crash handling."""

from __future__ import annotations

import logging

import pytest

import corral
import corral.lowlevel as ll
from corral.abc import Instrument


class Recorder(Instrument):
    def __init__(self) -> None:
        self.record: list[tuple[str, object]] = []

    def before_run(self) -> None:
        self.record.append(("before_run", None))

    def after_run(self) -> None:
        self.record.append(("after_run", None))

    def task_spawned(self, task: ll.Task) -> None:
        self.record.append(("task_spawned", task))

    def task_scheduled(self, task: ll.Task) -> None:
        self.record.append(("task_scheduled", task))

    def before_task_step(self, task: ll.Task) -> None:
        assert ll.current_task() is task
        self.record.append(("before_task_step", task))

    def after_task_step(self, task: ll.Task) -> None:
        assert ll.current_task() is task
        self.record.append(("after_task_step", task))

    def task_exited(self, task: ll.Task) -> None:
        self.record.append(("task_exited", task))

    def before_io_wait(self, timeout: float) -> None:
        self.record.append(("before_io_wait", timeout))

    def after_io_wait(self, timeout: float) -> None:
        self.record.append(("after_io_wait", timeout))

    def names(self, task: ll.Task | None = None) -> list[str]:
        return [name for name, arg in self.record if task is None or arg is task]


def test_all_hooks_called_in_order() -> None:
    r = Recorder()
    tasks: dict[str, ll.Task] = {}

    async def child() -> None:
        tasks["child"] = ll.current_task()
        await ll.checkpoint()

    async def main() -> None:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(child)

    corral.run(main, instruments=[r])
    names = r.names()
    assert names[0] == "before_run"
    assert names[-1] == "after_run"
    assert "before_io_wait" in names and "after_io_wait" in names
    # Same order as Trio: a step's reschedule and exit are reported inside
    # the step.
    assert r.names(tasks["child"]) == [
        "task_spawned",
        "task_scheduled",
        "before_task_step",
        "task_scheduled",
        "after_task_step",
        "before_task_step",
        "task_exited",
        "after_task_step",
    ]


def test_add_and_remove_during_run() -> None:
    r = Recorder()

    async def main() -> None:
        ll.add_instrument(r)
        ll.add_instrument(r)  # idempotent
        await ll.checkpoint()
        ll.remove_instrument(r)
        with pytest.raises(KeyError):
            ll.remove_instrument(r)
        before = len(r.record)
        await ll.checkpoint()
        assert len(r.record) == before

    corral.run(main)
    assert "before_task_step" in r.names()
    assert "after_run" not in r.names()


def test_only_overridden_hooks_are_called() -> None:
    class OnlyExits(Instrument):
        def __init__(self) -> None:
            self.count = 0

        def task_exited(self, task: ll.Task) -> None:
            self.count += 1

    inst = OnlyExits()

    async def main() -> None:
        runner = ll.current_task()._runner
        assert set(runner.instruments) == {"task_exited"}

    corral.run(main, instruments=[inst])
    assert inst.count >= 1


def test_crashing_instrument_is_removed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Crashy(Instrument):
        def __init__(self) -> None:
            self.calls = 0

        def before_task_step(self, task: ll.Task) -> None:
            self.calls += 1
            raise ValueError("oops")

    crashy = Crashy()
    healthy = Recorder()

    async def main() -> None:
        await ll.checkpoint()
        await ll.checkpoint()

    with caplog.at_level(logging.ERROR, logger="corral.abc.Instrument"):
        corral.run(main, instruments=[crashy, healthy])
    assert crashy.calls == 1
    assert healthy.names().count("before_task_step") > 1
    [rec] = caplog.records
    assert rec.name == "corral.abc.Instrument"
    assert rec.getMessage().startswith(
        "Exception raised when calling 'before_task_step' on instrument "
    )
    assert rec.getMessage().endswith(". Instrument has been disabled.")
    assert rec.exc_info is not None and rec.exc_info[0] is ValueError


def test_instrument_functions_outside_run() -> None:
    with pytest.raises(RuntimeError, match=r"^must be called from async context$"):
        ll.add_instrument(Recorder())
