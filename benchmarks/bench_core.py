"""Scheduler benchmarks (issue 2): corral side by side with trio, asyncio and
uvloop, in one process invocation, reported as ratios.

    python benchmarks/bench_core.py [--quick] [--repeat N] [--only NAME]

Each benchmark runs ``--repeat`` times per library and keeps the best time
(least disturbed by the noisy, shared machine). Throughput benchmarks report
operations per second; the sleepers benchmark reports the median lateness of
20k tasks sleeping 0-50 ms, measured from the common start (a task that
should wake at start+d and wakes at t is late by t-(start+d)).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# -- library adapters ---------------------------------------------------------
# Every benchmark is written once per *family*: the Trio-shaped API (trio and
# corral run the very same code, with the module passed in) and asyncio
# (plain asyncio and uvloop run the same code with a different loop).


def trio_family(mod: Any) -> dict[str, Callable[[int], float]]:
    lowlevel = mod.lowlevel

    def spawn(n: int) -> float:
        async def child() -> None:
            pass

        async def main() -> float:
            t0 = time.perf_counter()
            async with mod.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(child)
            return time.perf_counter() - t0

        return mod.run(main)

    def checkpoints(n: int) -> float:
        async def main() -> float:
            cp = lowlevel.checkpoint
            t0 = time.perf_counter()
            for _ in range(n):
                await cp()
            return time.perf_counter() - t0

        return mod.run(main)

    def ping_pong(n: int) -> float:
        async def main() -> float:
            to_b, b_in = mod.open_memory_channel(0)
            to_a, a_in = mod.open_memory_channel(0)

            async def echo() -> None:
                async for value in b_in:
                    await to_a.send(value)

            t0 = time.perf_counter()
            async with mod.open_nursery() as nursery:
                nursery.start_soon(echo)
                for i in range(n):
                    await to_b.send(i)
                    await a_in.receive()
                await to_b.aclose()
            return time.perf_counter() - t0

        return mod.run(main)

    def move_on(n: int) -> float:
        async def main() -> float:
            move_on_after = mod.move_on_after
            t0 = time.perf_counter()
            for _ in range(n):
                with move_on_after(10):
                    pass
            return time.perf_counter() - t0

        return mod.run(main)

    def sleepers(n: int) -> float:
        delays = _delays(n)
        late: list[float] = []

        async def sleeper(start: float, d: float) -> None:
            await mod.sleep(d)
            late.append(time.perf_counter() - (start + d))

        async def main() -> None:
            start = time.perf_counter()
            async with mod.open_nursery() as nursery:
                for d in delays:
                    nursery.start_soon(sleeper, start, d)

        mod.run(main)
        return statistics.median(late)

    return {
        "spawn": spawn,
        "checkpoints": checkpoints,
        "ping_pong": ping_pong,
        "move_on_after": move_on,
        "sleepers": sleepers,
    }


def asyncio_family(new_loop: Callable[[], asyncio.AbstractEventLoop]) -> dict[str, Callable[[int], float]]:
    def arun(coro: Any) -> Any:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(coro)

    def spawn(n: int) -> float:
        async def child() -> None:
            pass

        async def main() -> float:
            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for _ in range(n):
                    tg.create_task(child())
            return time.perf_counter() - t0

        return arun(main())

    def checkpoints(n: int) -> float:
        async def main() -> float:
            sleep = asyncio.sleep
            t0 = time.perf_counter()
            for _ in range(n):
                await sleep(0)
            return time.perf_counter() - t0

        return arun(main())

    def ping_pong(n: int) -> float:
        async def main() -> float:
            to_b: asyncio.Queue[int | None] = asyncio.Queue(1)
            to_a: asyncio.Queue[int] = asyncio.Queue(1)

            async def echo() -> None:
                while (value := await to_b.get()) is not None:
                    await to_a.put(value)

            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(echo())
                for i in range(n):
                    await to_b.put(i)
                    await to_a.get()
                await to_b.put(None)
            return time.perf_counter() - t0

        return arun(main())

    def move_on(n: int) -> float:
        async def main() -> float:
            timeout = asyncio.timeout
            t0 = time.perf_counter()
            for _ in range(n):
                async with timeout(10):
                    pass
            return time.perf_counter() - t0

        return arun(main())

    def sleepers(n: int) -> float:
        delays = _delays(n)
        late: list[float] = []

        async def sleeper(start: float, d: float) -> None:
            await asyncio.sleep(d)
            late.append(time.perf_counter() - (start + d))

        async def main() -> None:
            start = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for d in delays:
                    tg.create_task(sleeper(start, d))

        arun(main())
        return statistics.median(late)

    return {
        "spawn": spawn,
        "checkpoints": checkpoints,
        "ping_pong": ping_pong,
        "move_on_after": move_on,
        "sleepers": sleepers,
    }


def _delays(n: int) -> list[float]:
    rng = random.Random(1234)
    return [rng.uniform(0.0, 0.050) for _ in range(n)]


# (name, size, size-for-quick, unit). Throughput benchmarks: ops/s, higher is
# better. "sleepers": median lateness in ms, lower is better.
BENCHMARKS = [
    ("spawn", 50_000, 5_000, "tasks/s"),
    ("checkpoints", 500_000, 50_000, "checkpoints/s"),
    ("ping_pong", 100_000, 10_000, "round trips/s"),
    ("move_on_after", 200_000, 20_000, "enters/s"),
    ("sleepers", 20_000, 2_000, "p50 late ms"),
]


def libraries() -> dict[str, dict[str, Callable[[int], float]]]:
    libs: dict[str, dict[str, Callable[[int], float]]] = {}
    import corral

    libs["corral"] = trio_family(corral)
    try:
        import trio

        libs["trio"] = trio_family(trio)
    except ImportError:
        pass
    libs["asyncio"] = asyncio_family(asyncio.new_event_loop)
    try:
        import uvloop

        libs["uvloop"] = asyncio_family(uvloop.new_event_loop)
    except ImportError:
        pass
    return libs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", help="run only this benchmark")
    args = parser.parse_args()

    libs = libraries()
    names = list(libs)
    versions = {}
    for lib in names:
        mod = sys.modules.get(lib) or __import__(lib)
        versions[lib] = getattr(mod, "__version__", platform.python_version())
    print(f"# {platform.platform()}, Python {platform.python_version()}, "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))

    header = "| benchmark | unit | " + " | ".join(names) + " | corral/trio | corral/asyncio |"
    print(header)
    print("|" + "---|" * (len(names) + 4))
    for bench, size, quick_size, unit in BENCHMARKS:
        if args.only and bench not in args.only:
            continue
        n = quick_size if args.quick else size
        results: dict[str, float] = {}
        for lib in names:
            best = None
            for _ in range(args.repeat):
                gc.collect()
                value = libs[lib][bench](n)
                best = value if best is None else min(best, value)
            assert best is not None
            results[lib] = best
        if bench == "sleepers":
            shown = {lib: results[lib] * 1000 for lib in names}
            # lower is better: ratio = peer / corral (>1 means corral wakes closer)
            ratio = lambda peer: shown[peer] / shown["corral"] if shown["corral"] > 0 else float("inf")  # noqa: E731
            cells = [f"{shown[lib]:.1f}" for lib in names]
        else:
            shown = {lib: n / results[lib] for lib in names}
            ratio = lambda peer: shown["corral"] / shown[peer]  # noqa: E731
            cells = [f"{shown[lib]:,.0f}" for lib in names]
        r_trio = f"{ratio('trio'):.2f}x" if "trio" in shown else "-"
        r_asyncio = f"{ratio('asyncio'):.2f}x"
        print(f"| {bench} (n={n:,}) | {unit} | " + " | ".join(cells) + f" | {r_trio} | {r_asyncio} |",
              flush=True)
    print("\nRatios: higher is better for corral (for sleepers, peer lateness / corral lateness).")


if __name__ == "__main__":
    main()
