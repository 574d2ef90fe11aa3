"""TCP echo benchmark (issue 4): round trips/s of a 64-byte closed-loop echo
over loop-back TCP at 1, 16 and 256 connections, on corral, Trio, asyncio
streams and uvloop streams, plus the server's CPU time per round trip.

    python benchmarks/bench_echo.py [--seconds S] [--warmup S] [--conns 1,16,256]
                                    [--only NAME,...] [--pin MODE] [--repeat N]
                                    [--markdown FILE]

Each server is a small script in ``benchmarks/echo_servers/`` run as its own
process (one per row and connection count). The load comes from
``benchmarks/echo_client.c``, compiled here with gcc into
``benchmarks/build/`` (gitignored): one C process, one epoll set, N
connections, exactly one 64-byte message in flight per connection; it counts
the round trips completed in ``--seconds`` after a ``--warmup``. The same
binary run as ``--server`` is the reference row ``C epoll``: a
single-threaded C echo server, the ceiling this client and machine allow, so
the Python rows can be checked against a generator that is not the
bottleneck.

Server CPU per round trip is the server process's ``utime + stime`` (all its
threads, from ``/proc/<pid>/stat``, clock ticks of 10 ms) sampled when the
client prints ``start`` and again at ``done``, divided by the round trips in
between. ``server CPU %`` near 100 means the server is the bottleneck (one
Python thread); the client's CPU % is printed too.

Rows:

* ``trio streams``: ``trio.serve_tcp`` + ``receive_some`` / ``send_all``
  (the baseline: ratios are against this row).
* ``trio.socket``: ``accept`` / ``recv`` / ``send`` on ``trio.socket``.
* ``asyncio streams`` / ``uvloop streams``: ``asyncio.start_server`` +
  ``read`` / ``write`` / ``drain``, on the stdlib loop and on uvloop.
* ``corral.socket <backend>``: ``trio_socket_server.py`` with the import
  changed, on io_uring and on epoll.
* ``corral serve_tcp <backend>``: ``corral.serve_tcp`` + ``receive_some`` /
  ``send_all`` (the Trio streams program with the import changed), when
  corral has ``serve_tcp``.

One invocation measures every row side by side; by default one run per
cell, ``--repeat N`` runs N rounds over all rows and keeps each cell's best
rate and lowest CPU per round trip. The machine is a shared 2-vCPU
VM: other jobs only ever make a cell slower, and the server CPU per round
trip moves much less than the rate (check the server CPU %: below ~95% at
16+ connections the server was preempted).

CPU placement (``--pin``): on this VM waking a process that sleeps on the
*other* vCPU costs ~40 us (an IPI to an idle vCPU), so with one connection
the C reference server does 330k rt/s when it shares the client's CPU and
12k when it does not, and an unpinned run lands on either at random. The
default ``auto`` therefore pins both to CPU 0 for 1 connection (the figure
is then the CPU cost of a round trip, client + kernel + server, not the
VM's wake-up latency) and gives each its own CPU (server 1, client 0) for
16 and more, where both are busy and the server should have a whole CPU.
``split``, ``same`` and ``none`` force one placement for every cell.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "echo_servers")
BUILD = os.path.join(HERE, "build")
CLIENT_SRC = os.path.join(HERE, "echo_client.c")
CLIENT_BIN = os.path.join(BUILD, "echo_client")
TICKS = os.sysconf("SC_CLK_TCK")
BASELINE = "trio streams"


@dataclass
class Impl:
    name: str
    argv: list[str]


def implementations() -> list[Impl]:
    py = sys.executable

    def script(name: str, *extra: str) -> list[str]:
        return [py, os.path.join(SERVERS, name), *extra]

    return [
        Impl("C epoll (reference)", [CLIENT_BIN, "--server", "0"]),
        Impl(BASELINE, script("trio_server.py")),
        Impl("trio.socket", script("trio_socket_server.py")),
        Impl("asyncio streams", script("asyncio_server.py")),
        Impl("uvloop streams", script("uvloop_server.py")),
        Impl("corral.socket io_uring", script("corral_socket_server.py", "--backend", "io_uring")),
        Impl("corral.socket epoll", script("corral_socket_server.py", "--backend", "epoll")),
        Impl(
            "corral serve_tcp io_uring",
            script("corral_serve_tcp_server.py", "--backend", "io_uring"),
        ),
        Impl("corral serve_tcp epoll", script("corral_serve_tcp_server.py", "--backend", "epoll")),
    ]


def build_client() -> None:
    """Compile the load generator unless the binary is newer than its source."""
    if os.path.exists(CLIENT_BIN) and os.path.getmtime(CLIENT_BIN) >= os.path.getmtime(CLIENT_SRC):
        return
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        sys.exit("bench_echo.py needs gcc (or cc) to build benchmarks/echo_client.c")
    os.makedirs(BUILD, exist_ok=True)
    subprocess.run([gcc, "-O2", "-Wall", "-o", CLIENT_BIN, CLIENT_SRC], check=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may contain spaces: split after its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Cell:
    rate: float  # round trips/s
    server_us: float  # server CPU microseconds per round trip
    server_pct: float  # server CPU % during the measurement
    client_pct: float


def _pinned(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpu`` (None: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def placement(pin: str, conns: int) -> tuple[int | None, int | None]:
    """(server CPU, client CPU) for ``--pin`` and a connection count."""
    if pin == "auto":
        pin = "same" if conns == 1 else "split"
    if not {0, 1} <= os.sched_getaffinity(0):
        return None, None  # fewer than two usable CPUs: leave it to the kernel
    return {"same": (0, 0), "split": (1, 0), "none": (None, None)}[pin]


def start_server(impl: Impl, cpu: int | None) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        impl.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(cpu),
        cwd=SERVERS,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port "):
        proc.kill()
        _, err = proc.communicate()
        lines = [ln.strip(" |") for ln in err.splitlines()]
        errors = [ln for ln in lines if "Error" in ln or "Exception" in ln]
        raise RuntimeError((errors or lines or ["exited without a port line"])[-1])
    return proc, int(line.split()[1])


def measure(impl: Impl, conns: int, seconds: float, warmup: float, pin: str) -> Cell:
    server_cpu, client_cpu = placement(pin, conns)
    server, port = start_server(impl, server_cpu)
    try:
        client = subprocess.Popen(
            [CLIENT_BIN, "127.0.0.1", str(port), str(conns), str(seconds), str(warmup)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_pinned(client_cpu),
        )
        assert client.stdout is not None
        line = client.stdout.readline()
        if line.strip() != "start":
            client.wait()
            raise RuntimeError(f"client failed (exit {client.returncode})")
        s0, c0 = cpu_seconds(server.pid), cpu_seconds(client.pid)
        t0 = time.perf_counter()
        line = client.stdout.readline()
        s1, c1 = cpu_seconds(server.pid), cpu_seconds(client.pid)
        wall = time.perf_counter() - t0
        client.wait()
        if not line.startswith("done "):
            raise RuntimeError(f"client failed (exit {client.returncode})")
        stats = dict(kv.split("=") for kv in line.split()[1:])
        rts, secs = int(stats["roundtrips"]), float(stats["seconds"])
        return Cell(
            rate=rts / secs,
            server_us=(s1 - s0) / rts * 1e6 if rts else float("nan"),
            server_pct=(s1 - s0) / wall * 100,
            client_pct=(c1 - c0) / wall * 100,
        )
    finally:
        server.kill()
        server.wait()


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def table(results: dict[str, dict[int, Cell | str]], conns: list[int]) -> str:
    head = ["server"]
    for c in conns:
        head += [f"rt/s @{c}", f"vs trio @{c}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results.get(BASELINE, {})
    for name, row in results.items():
        cells = [name]
        for c in conns:
            cell = row.get(c)
            if isinstance(cell, Cell):
                b = base.get(c)
                ratio = f"{cell.rate / b.rate:.2f}x" if isinstance(b, Cell) else "-"
                cells += [fmt_rate(cell.rate), ratio]
            else:
                cells += ["n/a", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Server CPU per round trip (us); trio's CPU per round trip / the row's (the",
        "throughput ratio a CPU-bound server would reach on an idle machine);",
        "server CPU % / client CPU %:",
        "",
    ]
    head = (
        ["server"]
        + [f"us/rt @{c}" for c in conns]
        + [f"CPU vs trio @{c}" for c in conns]
        + [f"CPU % @{c}" for c in conns]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results.items():
        us, eff, pct = [], [], []
        for c in conns:
            cell, b = row.get(c), base.get(c)
            if isinstance(cell, Cell):
                us.append(f"{cell.server_us:.1f}")
                eff.append(f"{b.server_us / cell.server_us:.2f}x" if isinstance(b, Cell) else "-")
                pct.append(f"{cell.server_pct:.0f} / {cell.client_pct:.0f}")
            else:
                us.append("n/a")
                eff.append("-")
                pct.append("-")
        lines.append("| " + " | ".join([name, *us, *eff, *pct]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    parser.add_argument("--conns", default="1,16,256")
    parser.add_argument("--only", default=None, help="comma-separated substrings of row names")
    parser.add_argument(
        "--pin",
        choices=["auto", "split", "same", "none"],
        default="auto",
        help="CPU placement: split = server CPU 1 / client CPU 0, same = both CPU 0, "
        "auto = same for 1 connection, split otherwise (see the module docstring)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell, keep the best")
    parser.add_argument("--markdown", default=None, help="also write the tables to this file")
    args = parser.parse_args()
    conns = [int(c) for c in args.conns.split(",")]
    build_client()

    impls = implementations()
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        impls = [i for i in impls if i.name == BASELINE or any(w in i.name for w in wanted)]

    import trio

    # The servers import corral from this checkout (echo_servers/_common.py);
    # report that one.
    root = os.path.dirname(HERE)
    sys.path.insert(0, root)
    import corral

    try:
        rev = subprocess.run(
            ["git", "-C", root, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "no git"

    print(
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, Linux "
        f"{platform.release()}, Python {platform.python_version()}, trio {trio.__version__}, "
        f"corral {getattr(corral, '__version__', '?')} ({os.path.dirname(corral.__file__)}, "
        f"{rev}); load average "
        f"{os.getloadavg()[0]:.2f}; {args.seconds:g} s per cell after {args.warmup:g} s "
        f"warm-up; --pin {args.pin}; best of {args.repeat}",
        flush=True,
    )
    results: dict[str, dict[int, Cell | str]] = {}
    for impl in impls:
        results[impl.name] = {}
    # Best of --repeat, in rounds over every row so that a noisy minute on
    # the shared machine hits all rows alike; other jobs only ever make a
    # cell slower, so keep the highest rate and the lowest CPU per round trip.
    for rnd in range(args.repeat):
        for impl in impls:
            row = results[impl.name]
            for c in conns:
                if isinstance(row.get(c), str):
                    continue  # this server cannot start here
                try:
                    cell = measure(impl, c, args.seconds, args.warmup, args.pin)
                except RuntimeError as exc:
                    print(f"{impl.name} @{c}: n/a ({exc})", flush=True)
                    row[c] = str(exc)
                    continue
                print(
                    f"[{rnd + 1}/{args.repeat}] {impl.name} @{c}: {cell.rate:,.0f} rt/s, "
                    f"{cell.server_us:.1f} us CPU/rt, server {cell.server_pct:.0f}% "
                    f"client {cell.client_pct:.0f}%",
                    flush=True,
                )
                best = row.get(c)
                if isinstance(best, Cell):
                    if cell.rate < best.rate:
                        best.server_us = min(best.server_us, cell.server_us)
                        continue
                    cell.server_us = min(best.server_us, cell.server_us)
                row[c] = cell
    out = table(results, conns)
    print()
    print(out)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(out + "\n")


if __name__ == "__main__":
    main()
