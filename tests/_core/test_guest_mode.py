"""Guest mode: corral running inside asyncio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import pytest
import sniffio

import corral
import corral.lowlevel as ll


def aiotrio_run(
    corral_fn: Callable[[], Awaitable[Any]], *, pass_not_threadsafe: bool = True, **kwargs: Any
) -> Any:
    """Run ``corral_fn`` as a guest of a fresh asyncio loop; return (or raise)
    its result."""

    async def aio_main() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        if pass_not_threadsafe:
            kwargs["run_sync_soon_not_threadsafe"] = loop.call_soon
        ll.start_guest_run(
            corral_fn,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
            **kwargs,
        )
        return (await done).unwrap()

    return asyncio.run(aio_main())


def test_guest_runs_corral_code_and_returns() -> None:
    async def main() -> str:
        assert sniffio.current_async_library() == "corral"
        async with corral.open_nursery() as nursery:
            nursery.start_soon(corral.sleep, 0.01)
            nursery.start_soon(ll.checkpoint)
        with corral.move_on_after(0.01) as cs:
            await corral.sleep_forever()
        assert cs.cancelled_caught
        return "result"

    assert aiotrio_run(main) == "result"
    assert aiotrio_run(main, pass_not_threadsafe=False) == "result"


def test_guest_errors_go_to_done_callback() -> None:
    async def main() -> None:
        raise KeyError("guest")

    with pytest.raises(KeyError, match="guest"):
        aiotrio_run(main)


def test_host_keeps_running_while_guest_sleeps() -> None:
    async def aio_main() -> list[str]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        record: list[str] = []

        async def guest() -> None:
            await corral.sleep(0.05)
            record.append("guest done")

        ll.start_guest_run(
            guest,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        # Right after start_guest_run, sync corral APIs work on the host.
        assert ll.in_corral_run()
        corral.current_time()
        await asyncio.sleep(0.01)
        record.append("host ran")
        (await done).unwrap()
        return record

    assert asyncio.run(aio_main()) == ["host ran", "guest done"]


def test_host_wakes_guest_via_token() -> None:
    async def main() -> str:
        task = ll.current_task()
        token = ll.current_corral_token()
        result: list[str] = []

        def from_host() -> None:
            result.append("called")
            ll.reschedule(task, outcome.Value("woken by host"))

        threading.Timer(0.02, lambda: token.run_sync_soon(from_host)).start()
        value = await ll.wait_task_rescheduled(lambda _: ll.Abort.FAILED)
        return f"{value} {result}"

    assert aiotrio_run(main) == "woken by host ['called']"


def test_guest_deadline_changes_are_noticed() -> None:
    async def main() -> None:
        with corral.CancelScope() as cs:

            async def shorten() -> None:
                await corral.sleep(0.01)
                cs.deadline = corral.current_time() + 0.01

            async with corral.open_nursery() as nursery:
                nursery.start_soon(shorten)
                await corral.sleep(1000)
        assert cs.cancelled_caught

    aiotrio_run(main)


def test_guest_cannot_start_inside_run() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"^Attempted to call run\(\) from inside a run\(\)$"):
            ll.start_guest_run(
                ll.checkpoint,
                run_sync_soon_threadsafe=lambda fn: None,
                done_callback=lambda o: None,
            )

    corral.run(main)


def test_guest_with_autojump_clock() -> None:
    from corral.testing import MockClock

    async def main() -> float:
        start = corral.current_time()
        await corral.sleep(500)
        return corral.current_time() - start

    assert aiotrio_run(main, clock=MockClock(autojump_threshold=0)) == 500


def test_asyncio_generators_stay_with_host() -> None:
    # An async generator first iterated by asyncio code is finalized by asyncio,
    # not by the guest run.
    async def aio_main() -> str:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()

        async def agen():  # type: ignore[no-untyped-def]
            yield 1
            yield 2

        async def guest() -> None:
            await corral.sleep(0.01)

        ll.start_guest_run(
            guest,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
            host_uses_signal_set_wakeup_fd=True,
        )
        gen = agen()
        assert await gen.__anext__() == 1
        (await done).unwrap()
        await gen.aclose()
        return "ok"

    assert asyncio.run(aio_main()) == "ok"
