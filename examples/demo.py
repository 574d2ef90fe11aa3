"""A tour of corral: tasks in nurseries, channels, timeouts, cancellation and
TCP over the completion core.

    python examples/demo.py

Everything here is Trio's API: the program runs unchanged with
``import trio as corral``. It prints what happens and exits 0 when every
expectation holds (it checks itself, so a broken runtime makes it fail).
"""

from __future__ import annotations

import functools
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


async def tcp_echo_round_trip() -> bytes:
    """Real I/O: an echo server from serve_tcp and a client from
    open_tcp_stream, on the run's completion backend (io_uring here when the
    kernel allows it, else epoll)."""

    async def echo(stream: corral.SocketStream) -> None:
        async for chunk in stream:
            await stream.send_all(chunk)

    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(corral.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        received = b""
        with corral.fail_after(5):
            async with await corral.open_tcp_stream("127.0.0.1", port) as client:
                message = b"hello over a completion-based socket"
                await client.send_all(message)
                while len(received) < len(message):
                    received += await client.receive_some()
        print(f"  echoed {received!r}")
        nursery.cancel_scope.cancel()
    return received


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
    print("TCP echo through serve_tcp / open_tcp_stream:")
    echoed = await tcp_echo_round_trip()
    elapsed = time.monotonic() - t0

    ok = (done == 10 and caught and raised
          and log == ["sibling cleaned up", "nursery raised ValueError('boom')"]
          and status.startswith("ready")
          and echoed == b"hello over a completion-based socket")
    print(f"all expectations held: {ok} ({elapsed:.2f} s)")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    corral.run(main)
