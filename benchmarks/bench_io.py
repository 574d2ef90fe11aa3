"""Completion-core benchmarks (issue 3): ops/s through ``perform()`` on
io_uring and epoll, side by side with Trio's closest equivalent, in one run,
plus ``io_uring_enter`` calls per completed op with 256 ops in flight.

    python benchmarks/bench_io.py [--quick] [--repeat N] [--only NAME] [--no-strace]

Rows:

* ``nop x1``: one task awaiting ``perform(NopOp())`` in a loop (Trio:
  ``trio.lowlevel.checkpoint()``, its closest equivalent: one trip through
  the run loop).
* ``nop x256``: the same in 256 tasks at once.
* ``socketpair ping-pong``: two tasks bounce one byte over a Unix socketpair
  (corral: ``perform(SendOp)`` / ``perform(RecvOp)`` into a bytearray; Trio:
  ``trio.socket`` ``send`` / ``recv``). Round trips/s.
* ``... pool recv``: the same with the receive into a pool buffer the kernel
  picks (``RecvPoolOp``, what corral's sockets use); Trio as above.
* ``ping-pong x128 pairs``: 128 socketpairs bouncing at once (256 tasks,
  up to 256 ops in flight). Round trips/s summed over all pairs.
* ``x128 pairs, multishot recv``: the same with one multishot receive per
  socket (``RecvMultishotOp``: the kernel keeps the receive armed), the
  lever a socket layer has on io_uring.
* ``corral.socket ping-pong`` (x1 and x128 pairs): the same through
  ``corral.socket`` (``await sock.send(...)`` / ``await sock.recv(64)``), the
  exact code Trio runs with ``trio.socket``: what a user sees.

Each benchmark runs ``--repeat`` times per implementation, interleaved, and
keeps the best (the machine is shared and noisy). The enter-calls figure
comes from the ring's own counter (every ``io_uring_enter`` it makes) and is
cross-checked once with ``strace -f -c -e trace=io_uring_enter`` on a child
process running the same workload.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

# Run from a checkout without installing: make `import corral` find it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import corral
from corral._io.ops import NopOp, RecvMultishotOp, RecvOp, RecvPoolOp, SendOp
from corral._io.perform import cancel_operation, current_backend, perform

PAIRS = 128
TASKS = 256

# A benchmark returns (seconds, units done, io_uring_enter-or-wait calls).
Result = tuple[float, int, int]


def _kernel_waits() -> int:
    return int(current_backend().statistics().kernel_waits)


# -- corral -------------------------------------------------------------------


def corral_nop(n: int, tasks: int) -> Callable[[], Any]:
    per = max(1, n // tasks)

    async def main() -> Result:
        async def worker() -> None:
            for _ in range(per):
                await perform(NopOp())

        w0 = _kernel_waits()
        t0 = time.perf_counter()
        if tasks == 1:
            await worker()
        else:
            async with corral.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(worker)
        return time.perf_counter() - t0, per * tasks, _kernel_waits() - w0

    return main


def corral_pingpong(n: int, pairs: int, recv: str) -> Callable[[], Any]:
    """recv: "buf" (RecvOp into a bytearray), "pool" (a RecvPoolOp per
    receive) or "multishot" (one RecvMultishotOp per socket)."""
    per = max(1, n // pairs)

    async def receive(fd: int, buf: bytearray, stream: Any) -> bytes | int:
        if recv == "buf":
            return await perform(RecvOp(fd, buf))  # type: ignore[no-any-return]
        lease = await perform(stream if recv == "multishot" else RecvPoolOp(fd))
        data = bytes(lease.data)
        lease.release()
        return data

    async def end(stream: Any) -> None:
        if stream is None:
            return
        cancel_operation(stream)
        try:
            while True:
                (await perform(stream)).release()
        except corral.EndOfChannel:
            pass

    async def main() -> Result:
        socks = [socket.socketpair() for _ in range(pairs)]
        for a, b in socks:
            a.setblocking(False)
            b.setblocking(False)

        async def client(fd: int) -> None:
            buf = bytearray(64)
            stream = RecvMultishotOp(fd) if recv == "multishot" else None
            for _ in range(per):
                await perform(SendOp(fd, b"x"))
                await receive(fd, buf, stream)
            await end(stream)

        async def echo(fd: int) -> None:
            buf = bytearray(64)
            stream = RecvMultishotOp(fd) if recv == "multishot" else None
            for _ in range(per):
                got = await receive(fd, buf, stream)
                await perform(SendOp(fd, memoryview(buf)[:got] if type(got) is int else got))
            await end(stream)

        w0 = _kernel_waits()
        t0 = time.perf_counter()
        async with corral.open_nursery() as nursery:
            for a, b in socks:
                nursery.start_soon(echo, b.fileno())
                nursery.start_soon(client, a.fileno())
        elapsed = time.perf_counter() - t0
        waits = _kernel_waits() - w0
        for a, b in socks:
            a.close()
            b.close()
        return elapsed, per * pairs, waits

    return main


def corral_socket_pingpong(n: int, pairs: int) -> Callable[[], Any]:
    import corral.socket as csocket

    per = max(1, n // pairs)

    async def main() -> Result:
        socks = [csocket.socketpair() for _ in range(pairs)]

        async def client(sock: Any) -> None:
            for _ in range(per):
                await sock.send(b"x")
                await sock.recv(64)

        async def echo(sock: Any) -> None:
            for _ in range(per):
                await sock.send(await sock.recv(64))

        w0 = _kernel_waits()
        t0 = time.perf_counter()
        async with corral.open_nursery() as nursery:
            for a, b in socks:
                nursery.start_soon(echo, b)
                nursery.start_soon(client, a)
        elapsed = time.perf_counter() - t0
        waits = _kernel_waits() - w0
        for a, b in socks:
            a.close()
            b.close()
        return elapsed, per * pairs, waits

    return main


def run_corral(backend: str, main: Callable[[], Any]) -> Result:
    return corral.run(main, backend=backend)  # type: ignore[no-any-return]


# -- trio ---------------------------------------------------------------------


def trio_nop(n: int, tasks: int) -> Callable[[], Any]:
    import trio

    per = max(1, n // tasks)

    async def main() -> Result:
        checkpoint = trio.lowlevel.checkpoint

        async def worker() -> None:
            for _ in range(per):
                await checkpoint()

        t0 = time.perf_counter()
        if tasks == 1:
            await worker()
        else:
            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(worker)
        return time.perf_counter() - t0, per * tasks, 0

    return main


def trio_pingpong(n: int, pairs: int) -> Callable[[], Any]:
    import trio

    per = max(1, n // pairs)

    async def main() -> Result:
        socks = [trio.socket.socketpair() for _ in range(pairs)]

        async def client(sock: Any) -> None:
            for _ in range(per):
                await sock.send(b"x")
                await sock.recv(64)

        async def echo(sock: Any) -> None:
            for _ in range(per):
                await sock.send(await sock.recv(64))

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for a, b in socks:
                nursery.start_soon(echo, b)
                nursery.start_soon(client, a)
        elapsed = time.perf_counter() - t0
        for a, b in socks:
            a.close()
            b.close()
        return elapsed, per * pairs, 0

    return main


def run_trio(main: Callable[[], Any]) -> Result:
    import trio

    return trio.run(main)  # type: ignore[no-any-return]


# -- the table ----------------------------------------------------------------


# (name, size, quick size, unit, corral workload factory, trio workload factory)
BENCHMARKS: list[tuple[str, int, int, str, Callable[[int], Any], Callable[[int], Any]]] = [
    ("nop x1", 300_000, 30_000, "ops/s",
     lambda n: corral_nop(n, 1), lambda n: trio_nop(n, 1)),
    ("nop x256", 500_000, 50_000, "ops/s",
     lambda n: corral_nop(n, TASKS), lambda n: trio_nop(n, TASKS)),
    ("socketpair ping-pong", 100_000, 10_000, "round trips/s",
     lambda n: corral_pingpong(n, 1, "buf"), lambda n: trio_pingpong(n, 1)),
    ("ping-pong, pool recv", 100_000, 10_000, "round trips/s",
     lambda n: corral_pingpong(n, 1, "pool"), lambda n: trio_pingpong(n, 1)),
    (f"ping-pong x{PAIRS} pairs", 200_000, 20_000, "round trips/s",
     lambda n: corral_pingpong(n, PAIRS, "buf"), lambda n: trio_pingpong(n, PAIRS)),
    (f"x{PAIRS} pairs, multishot recv", 200_000, 20_000, "round trips/s",
     lambda n: corral_pingpong(n, PAIRS, "multishot"), lambda n: trio_pingpong(n, PAIRS)),
    ("corral.socket ping-pong", 100_000, 10_000, "round trips/s",
     lambda n: corral_socket_pingpong(n, 1), lambda n: trio_pingpong(n, 1)),
    (f"corral.socket x{PAIRS} pairs", 200_000, 20_000, "round trips/s",
     lambda n: corral_socket_pingpong(n, PAIRS), lambda n: trio_pingpong(n, PAIRS)),
]  # fmt: skip


def available_backends() -> list[str]:
    from corral._io._select import _backend_class

    names = []
    for name in ("io_uring", "epoll"):
        try:
            _backend_class(name)
        except ImportError:
            continue
        names.append(name)
    return names


def strace_enters(workload: str, n: int) -> tuple[int, int] | None:
    """Count io_uring_enter calls of a child running one workload on
    io_uring, with strace. Returns (strace count, ring counter) or None."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    proc = subprocess.run(
        [strace, "-f", "-c", "-e", "trace=io_uring_enter", sys.executable,
         os.path.abspath(__file__), "--child", workload, "--n", str(n)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    m = re.search(
        r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?io_uring_enter", proc.stderr, re.M
    )
    ring = re.search(r"ring-enters=(\d+)", proc.stdout)
    if not m or not ring:
        return None
    return int(m.group(1)), int(ring.group(1))


def child(workload: str, n: int) -> None:
    makers: dict[str, Callable[[], Callable[[], Any]]] = {
        "nop256": lambda: corral_nop(n, TASKS),
        "pingpong128": lambda: corral_pingpong(n, PAIRS, "buf"),
    }
    run_workload = makers[workload]()
    # Count every enter of the whole run (setup and shutdown included), as
    # strace does.
    holder: dict[str, Any] = {}

    async def main() -> Result:
        holder["backend"] = current_backend()
        return await run_workload()  # type: ignore[no-any-return]

    _, ops, _ = corral.run(main, backend="io_uring")
    ring = holder["backend"]._ring
    print(f"ops={ops} ring-enters={int(ring._r.enter_calls)}")


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", help="run only benchmarks containing this")
    parser.add_argument("--no-strace", action="store_true", help="skip the strace cross-check")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n)
        return

    try:
        import trio
    except ImportError:
        trio = None  # type: ignore[assignment]
    backends = available_backends()
    notes = []
    if "epoll" not in backends:
        notes.append("epoll: skipped (corral/_io/epoll.py is not available yet)")
    impls = [f"corral {b}" for b in backends] + (["trio"] if trio else [])
    print(
        f"# {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"corral {getattr(corral, '__version__', '?')}"
        + (f", trio {trio.__version__}" if trio else "")
    )
    head = ["benchmark", "unit"] + impls + [f"{i}/trio" for i in impls if i != "trio"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    enters: dict[str, tuple[int, int]] = {}
    units: dict[str, str] = {}
    for name, size, quick, unit, corral_fn, trio_fn in BENCHMARKS:
        if args.only and not any(o in name for o in args.only):
            continue
        n = quick if args.quick else size
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            for impl in impls:
                if impl == "trio":
                    secs, done, waits = run_trio(trio_fn(n))
                else:
                    secs, done, waits = run_corral(impl.split()[1], corral_fn(n))
                    if impl == "corral io_uring":
                        enters[name] = (waits, done)
                        units[name] = unit
                rate = done / secs
                best[impl] = max(best.get(impl, 0.0), rate)
        row = [name, unit] + [fmt(best[i]) for i in impls]
        if "trio" in best:
            row += [f"{best[i] / best['trio']:.2f}x" for i in impls if i != "trio"]
        print("| " + " | ".join(row) + " |", flush=True)

    if enters:
        print()
        print("io_uring_enter calls per completed op (ring counter, last repeat):")
        print()
        print("| benchmark | ops | io_uring_enter | per op |")
        print("|---|---|---|---|")
        for name, (waits, done) in enters.items():
            ops = done * (4 if units[name] == "round trips/s" else 1)  # 2 sends + 2 recvs
            print(f"| {name} | {ops:,} | {waits:,} | {waits / ops:.3f} |")
    if not args.no_strace and "io_uring" in backends:
        n = 20_000 if args.quick else 100_000
        print()
        for workload, per_unit in (("nop256", 1), ("pingpong128", 4)):
            got = strace_enters(workload, n)
            if got is None:
                notes.append(f"strace cross-check of {workload} failed or strace is missing")
                continue
            traced, ring = got
            ops = (
                (n // (TASKS if workload == "nop256" else PAIRS))
                * (TASKS if workload == "nop256" else PAIRS)
                * per_unit
            )
            print(
                f"strace -f -c cross-check, {workload}: {traced:,} io_uring_enter "
                f"(ring counter {ring:,}) for {ops:,} ops = {traced / ops:.3f} per op"
            )
    for note in notes:
        print(f"\nNote: {note}")


if __name__ == "__main__":
    main()
