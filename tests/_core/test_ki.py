"""KeyboardInterrupt protection and delivery."""

from __future__ import annotations

import signal
import threading

import pytest

import corral
import corral.lowlevel as ll
from corral.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)


def ki_self() -> None:
    signal.raise_signal(signal.SIGINT)


def test_decorators_return_the_function_and_mark_it() -> None:
    @ll.enable_ki_protection
    def protected() -> bool:
        return ll.currently_ki_protected()

    @ll.disable_ki_protection
    def unprotected() -> bool:
        return ll.currently_ki_protected()

    @ll.enable_ki_protection
    async def aprotected() -> bool:
        return ll.currently_ki_protected()

    @ll.enable_ki_protection
    def gen_protected():  # type: ignore[no-untyped-def]
        yield ll.currently_ki_protected()

    @ll.enable_ki_protection
    async def agen_protected():  # type: ignore[no-untyped-def]
        yield ll.currently_ki_protected()

    async def main() -> None:
        assert not ll.currently_ki_protected()  # the main task is unprotected
        assert protected()
        assert not unprotected()
        assert await aprotected()
        assert next(gen_protected())
        async for value in agen_protected():
            assert value
        # Nested: the innermost marked frame decides.
        assert ll.enable_ki_protection(lambda: unprotected())() is False

    corral.run(main)
    assert protected.__name__ == "protected"


async def test_system_tasks_are_protected() -> None:
    seen = []

    async def system() -> None:
        seen.append(ll.currently_ki_protected())

    ll.spawn_system_task(system)
    await wait_all_tasks_blocked()
    assert seen == [True]


def test_ki_in_unprotected_code_raises_immediately() -> None:
    async def main() -> None:
        ki_self()
        raise AssertionError("not reached")  # pragma: no cover

    with pytest.raises(KeyboardInterrupt):
        corral.run(main)


def test_ki_in_protected_code_is_delivered_at_next_checkpoint() -> None:
    record = []

    @ll.enable_ki_protection
    async def protected() -> None:
        ki_self()
        record.append("still running")
        await ll.checkpoint()
        record.append("not reached")  # pragma: no cover

    with pytest.raises(KeyboardInterrupt):
        corral.run(protected)
    assert record == ["still running"]


def test_ki_wakes_blocked_main_task() -> None:
    async def main() -> None:
        @ll.enable_ki_protection
        async def kicker() -> None:
            await wait_all_tasks_blocked()
            ki_self()  # protected: delivered to the main task instead

        async with corral.open_nursery() as nursery:
            nursery.start_soon(kicker)
            await corral.sleep_forever()

    # The KI is raised in the main task, inside the nursery body.
    with pytest.raises(BaseExceptionGroup) as info:
        corral.run(main)
    assert info.group_contains(KeyboardInterrupt)


def test_ki_while_main_task_sleeps() -> None:
    async def main() -> None:
        def handler() -> None:
            ki_self()

        ll.current_corral_token().run_sync_soon(handler)
        await corral.sleep(1000)

    with pytest.raises(KeyboardInterrupt):
        corral.run(main)


def test_restrict_keyboard_interrupt_to_checkpoints() -> None:
    record = []

    async def main() -> None:
        ki_self()
        record.append("kept running")
        await ll.checkpoint()
        record.append("not reached")  # pragma: no cover

    with pytest.raises(KeyboardInterrupt):
        corral.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
    assert record == ["kept running"]


def test_pending_ki_at_end_of_run_is_raised() -> None:
    @ll.enable_ki_protection
    async def main() -> str:
        ki_self()
        return "finished"  # no checkpoint after the KI

    with pytest.raises(KeyboardInterrupt):
        corral.run(main)


def test_ki_context_is_main_task_error() -> None:
    @ll.enable_ki_protection
    async def main() -> None:
        ki_self()
        raise ValueError("main failed")

    with pytest.raises(KeyboardInterrupt) as info:
        corral.run(main)
    assert isinstance(info.value.__context__, ValueError)


def test_handler_restored_after_run() -> None:
    async def main() -> None:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler

    corral.run(main)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_custom_sigint_handler_is_left_alone() -> None:
    calls = []

    def custom(signum: int, frame: object) -> None:
        calls.append(signum)

    old = signal.signal(signal.SIGINT, custom)
    try:

        async def main() -> None:
            assert signal.getsignal(signal.SIGINT) is custom
            ki_self()
            await ll.checkpoint()

        corral.run(main)
    finally:
        signal.signal(signal.SIGINT, old)
    assert calls == [signal.SIGINT]
