"""File benchmarks (issue 5): corral's native file API side by side with
trio's (worker threads), in one process invocation, reported as ratios.

    python benchmarks/bench_files.py [--quick] [--repeat N] [--only NAME]
                                     [--backend io_uring|epoll]

The same program runs on both libraries (the module is passed in):

* small-files: read 2,000 files of 4 KiB, 64 concurrent tasks
  (``open_file`` + ``read`` + ``aclose``), files per second;
* stat: ``Path.stat`` of 10,000 files, 64 concurrent tasks, stats per second;
* sequential: read one 256 MiB file in 64 KiB chunks, MB/s;
* send-file: serve a 100 MiB file over loopback TCP, ``send_file`` vs
  ``read`` + ``send_all`` (corral only; skipped when SocketStream is absent).

Files live in a fresh temporary directory (page cache warm after the first
repeat). Each benchmark keeps the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any


def make_tree(root: str, n_small: int, n_stat: int, big_mb: int) -> dict[str, Any]:
    small = os.path.join(root, "small")
    os.mkdir(small)
    payload = os.urandom(4096)
    small_paths = []
    for i in range(n_small):
        p = os.path.join(small, f"{i}.bin")
        with open(p, "wb") as f:
            f.write(payload)
        small_paths.append(p)
    stat_dir = os.path.join(root, "stat")
    os.mkdir(stat_dir)
    stat_paths = []
    for i in range(n_stat):
        p = os.path.join(stat_dir, f"{i}")
        with open(p, "wb"):
            pass
        stat_paths.append(p)
    big = os.path.join(root, "big.bin")
    chunk = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for _ in range(big_mb):
            f.write(chunk)
    return {"small": small_paths, "stat": stat_paths, "big": big, "big_bytes": big_mb << 20}


def family(mod: Any, run: Callable[..., Any]) -> dict[str, Callable[[dict[str, Any]], float]]:
    """Benchmarks written once against the Trio-shaped API."""

    async def fan_out(items: list[Any], worker: Callable[[Any], Any], tasks: int) -> None:
        it = iter(items)

        async def loop() -> None:
            for item in it:
                await worker(item)

        async with mod.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(loop)

    def small_files(tree: dict[str, Any]) -> float:
        paths = tree["small"]

        async def one(p: str) -> None:
            f = await mod.open_file(p, "rb")
            try:
                data = await f.read()
            finally:
                await f.aclose()
            assert len(data) == 4096

        async def main() -> float:
            t0 = time.perf_counter()
            await fan_out(paths, one, 64)
            return time.perf_counter() - t0

        return len(paths) / float(run(main))

    def stat(tree: dict[str, Any]) -> float:
        paths = [mod.Path(p) for p in tree["stat"]]

        async def one(p: Any) -> None:
            await p.stat()

        async def main() -> float:
            t0 = time.perf_counter()
            await fan_out(paths, one, 64)
            return time.perf_counter() - t0

        return len(paths) / float(run(main))

    def sequential(tree: dict[str, Any]) -> float:
        async def main() -> float:
            t0 = time.perf_counter()
            total = 0
            f = await mod.open_file(tree["big"], "rb")
            try:
                while chunk := await f.read(65536):
                    total += len(chunk)
            finally:
                await f.aclose()
            assert total == tree["big_bytes"]
            return time.perf_counter() - t0

        return float(tree["big_bytes"]) / float(run(main)) / 1e6

    return {"small-files": small_files, "stat": stat, "sequential": sequential}


UNITS = {"small-files": "files/s", "stat": "stats/s", "sequential": "MB/s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=None)
    parser.add_argument("--backend", default="io_uring")
    args = parser.parse_args()

    import trio

    import corral

    n_small, n_stat, big_mb = (2000, 10000, 256) if not args.quick else (500, 2000, 32)
    root = tempfile.mkdtemp(prefix="corral-bench-files-")
    try:
        tree = make_tree(root, n_small, n_stat, big_mb)

        def corral_run(fn: Callable[..., Any]) -> Any:
            return corral.run(fn, backend=args.backend)

        libs = {"corral": family(corral, corral_run), "trio": family(trio, trio.run)}
        print(
            f"# {platform.platform()}, Python {platform.python_version()}, "
            f"corral backend {args.backend}, best of {args.repeat}\n"
        )
        print("| benchmark | unit | corral | trio | corral/trio |")
        print("|---|---|---|---|---|")
        for bench in ("small-files", "stat", "sequential"):
            if args.only and args.only != bench:
                continue
            best: dict[str, float] = {}
            for name, benches in libs.items():
                results = []
                for _ in range(args.repeat):
                    gc.collect()
                    results.append(benches[bench](tree))
                best[name] = max(results)
            ratio = best["corral"] / best["trio"]
            print(
                f"| {bench} | {UNITS[bench]} | {best['corral']:,.0f} | {best['trio']:,.0f} "
                f"| {ratio:.2f}x |",
                flush=True,
            )
        if not args.only or args.only == "send-file":
            _send_file_row(corral, args.backend, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\nRatios: higher is better for corral.")


def _send_file_row(corral: Any, backend: str, root: str) -> None:
    try:
        from corral._sendfile import bench_send_file
    except ImportError:
        print("| send-file | MB/s | (not available) | | |")
        return
    size = 100 << 20
    path = os.path.join(root, "serve.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(size))
    zero_copy, copy = bench_send_file(corral, path, size, backend)
    print(
        f"| send-file 100 MiB over TCP | MB/s | {zero_copy:,.0f} (send_file) "
        f"| {copy:,.0f} (read+send_all, corral) | {zero_copy / copy:.2f}x |"
    )


if __name__ == "__main__":
    main()
