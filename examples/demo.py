"""A tour of corral: tasks in nurseries, channels, timeouts and cancellation.

    python examples/demo.py

Everything here is Trio's API: the program runs unchanged with
``import trio as corral``. It prints what happens and exits 0 when every
expectation holds (it checks itself, so a broken runtime makes it fail).
"""

from __future__ import annotations

import sys
import time

import corral


async def worker(name: str, jobs: corral.MemoryReceiveChannel[float],
                 results: corral.MemorySendChannel[str]) -> None:
    """Take jobs (a duration to "work" for) until the channel closes."""
    async with results:
        async for duration in jobs:
            await corral.sleep(duration)
            await results.send(f"{name} finished a {duration * 1000:.0f} ms job")


async def fan_out_fan_in() -> int:
    """Three workers share ten jobs through memory channels."""
    send_jobs, receive_jobs = corral.open_memory_channel[float](0)
    send_results, receive_results = corral.open_memory_channel[str](10)
    done = 0
    async with corral.open_nursery() as nursery:
        async with receive_jobs, send_results:
            for i in range(3):
                nursery.start_soon(worker, f"worker-{i}", receive_jobs.clone(),
                                   send_results.clone())

        async def feed() -> None:
            async with send_jobs:
                for i in range(10):
                    await send_jobs.send(0.01 * (i % 4))

        nursery.start_soon(feed)
        async for line in receive_results:
            done += 1
            print(f"  {line}")
    return done


async def deadlines() -> tuple[bool, bool]:
    """A move_on_after that gives up quietly, and a fail_after that raises."""
    with corral.move_on_after(0.05) as scope:
        await corral.sleep(10)
    print(f"  move_on_after: cancelled_caught={scope.cancelled_caught}")

    raised = False
    try:
        with corral.fail_after(0.05):
            await corral.sleep_forever()
    except corral.TooSlowError:
        raised = True
    print(f"  fail_after raised TooSlowError: {raised}")
    return scope.cancelled_caught, raised


async def crash_cancels_siblings() -> list[str]:
    """When one child crashes, the nursery cancels its siblings and raises
    the crash in an ExceptionGroup; the shielded cleanup still runs."""
    log: list[str] = []

    async def sibling() -> None:
        try:
            await corral.sleep_forever()
        finally:
            with corral.CancelScope(shield=True):
                await corral.sleep(0.01)  # cleanup that must not be cut short
            log.append("sibling cleaned up")

    async def crasher() -> None:
        await corral.sleep(0.02)
        raise ValueError("boom")

    try:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(sibling)
            nursery.start_soon(crasher)
    except ExceptionGroup as group:
        log.append(f"nursery raised {group.exceptions[0]!r}")
    for line in log:
        print(f"  {line}")
    return log


async def start_a_server_like_task() -> str:
    """nursery.start() waits until the child says it is ready."""

    async def service(task_status: corral.TaskStatus[str] = corral.TASK_STATUS_IGNORED) -> None:
        await corral.sleep(0.01)
        task_status.started("ready on port 0 (pretend)")
        await corral.sleep_forever()

    async with corral.open_nursery() as nursery:
        status = await nursery.start(service)
        print(f"  service says: {status}")
        nursery.cancel_scope.cancel()
    return status


async def main() -> None:
    t0 = time.monotonic()
    print("fan-out / fan-in over memory channels:")
    done = await fan_out_fan_in()
    print("deadlines:")
    caught, raised = await deadlines()
    print("a crash cancels its siblings:")
    log = await crash_cancels_siblings()
    print("nursery.start():")
    status = await start_a_server_like_task()
    elapsed = time.monotonic() - t0

    ok = (done == 10 and caught and raised
          and log == ["sibling cleaned up", "nursery raised ValueError('boom')"]
          and status.startswith("ready"))
    print(f"all expectations held: {ok} ({elapsed:.2f} s)")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    corral.run(main)
