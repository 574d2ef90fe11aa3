"""corral.Path: pathlib's results and errors, async, on every file engine."""

from __future__ import annotations

import os
import pathlib
import stat
from collections.abc import Callable
from typing import Any

import pytest
from file_helpers import (  # noqa: F401  (file_engine: autouse fixture)
    current_engine,
    file_engine,
    no_fd_leak,
    no_worker_threads,
    run_on_engine,
)

import corral

pytestmark = pytest.mark.corral(run=run_on_engine)


def _sync(fn: Callable[[], Any]) -> Any:
    try:
        result = fn()
        if hasattr(result, "__next__"):
            result = list(result)
    except Exception as exc:
        return ("raise", type(exc), str(exc))
    if isinstance(result, pathlib.PurePath):
        return ("path", str(result))
    if isinstance(result, os.stat_result):
        # (Windows' stat has no st_blocks.)
        return ("stat", tuple(result), result.st_mtime_ns, getattr(result, "st_blocks", None))
    if hasattr(result, "__next__") or isinstance(result, (list, map)):
        return ("paths", sorted(str(p) for p in result))
    return ("ok", result)


async def _async(fn: Callable[[], Any]) -> Any:
    try:
        result = await fn()
    except Exception as exc:
        return ("raise", type(exc), str(exc))
    if isinstance(result, corral.Path):
        return ("path", str(result))
    if isinstance(result, os.stat_result):
        # (Windows' stat has no st_blocks.)
        return ("stat", tuple(result), result.st_mtime_ns, getattr(result, "st_blocks", None))
    if hasattr(result, "__next__") or isinstance(result, (list, map)):
        return ("paths", sorted(str(p) for p in result))
    return ("ok", result)


HAVE_FIFOS = hasattr(os, "mkfifo")


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "a.txt").write_text("alpha\nbeta\n")
    (tmp_path / "dir" / "b.bin").write_bytes(b"\x00\xff" * 1000)
    (tmp_path / "dir" / "sub" / "c.txt").write_text("gamma")
    (tmp_path / "link").symlink_to(tmp_path / "dir" / "a.txt")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    if HAVE_FIFOS:
        os.mkfifo(tmp_path / "fifo")
    return tmp_path


QUERIES = [
    "stat", "lstat", "exists", "is_dir", "is_file", "is_symlink", "is_fifo",
    "is_socket", "is_block_device", "is_char_device", "read_bytes", "read_text",
    "iterdir", "resolve", "absolute", "readlink", "owner", "group", "is_mount",
]  # fmt: skip
NAMES = ["dir", "dir/a.txt", "dir/b.bin", "link", "dangling", "fifo", "missing",
         "dir/a.txt/x", "dir/sub"]  # fmt: skip
if not HAVE_FIFOS:
    NAMES.remove("fifo")  # Windows has no FIFOs (os.mkfifo)


@pytest.mark.parametrize("name", NAMES)
async def test_queries_match_pathlib(tree: pathlib.Path, name: str) -> None:
    sync_path = tree / name
    async_path = corral.Path(tree / name)
    with no_fd_leak():
        for query in QUERIES:
            if query.startswith("read_") and name == "fifo":
                continue  # would wait for a writer
            expected = _sync(getattr(sync_path, query))
            got = await _async(getattr(async_path, query))
            assert (query, got) == (query, expected)


async def test_glob_and_rglob(tree: pathlib.Path) -> None:
    p = corral.Path(tree)
    assert sorted(map(str, await p.glob("dir/*.txt"))) == sorted(map(str, tree.glob("dir/*.txt")))
    found = list(await p.rglob("*.txt"))
    assert all(isinstance(x, corral.Path) for x in found)
    assert sorted(map(str, found)) == sorted(map(str, tree.rglob("*.txt")))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "latin-1"])
async def test_read_write_text_and_bytes(tmp_path: pathlib.Path, encoding: str) -> None:
    p = corral.Path(tmp_path / "f")
    text = "héllo\nwörld\r\n"
    assert await p.write_text(text, encoding=encoding, newline="") == len(text)
    assert (tmp_path / "f").read_bytes() == text.encode(encoding)
    assert await p.read_text(encoding=encoding) == (tmp_path / "f").read_text(encoding=encoding)
    assert await p.write_bytes(bytearray(b"\x01\x02")) == 2
    assert await p.read_bytes() == b"\x01\x02"
    with pytest.raises(TypeError, match=r"^data must be str, not bytes$"):
        await p.write_text(b"x")  # type: ignore[arg-type]


async def _mutations(p: Any, do: Callable[[Callable[[], Any]], Any]) -> list[Any]:
    out: list[Any] = []
    out.append(await do(lambda: (p / "a" / "b").mkdir()))
    out.append(await do(lambda: (p / "a" / "b").mkdir(parents=True)))
    out.append(await do(lambda: (p / "a" / "b").mkdir(parents=True)))
    out.append(await do(lambda: (p / "a" / "b").mkdir(exist_ok=True)))
    out.append(await do(lambda: (p / "a" / "f").touch()))
    out.append(await do(lambda: (p / "a" / "f").touch(exist_ok=False)))
    out.append(await do(lambda: (p / "a" / "g").touch(exist_ok=False)))
    out.append(await do(lambda: (p / "a" / "f").rename(p / "a" / "h")))
    out.append(await do(lambda: (p / "a" / "g").replace(p / "a" / "h")))
    out.append(await do(lambda: (p / "a" / "g").rename(p / "x")))
    out.append(await do(lambda: (p / "a" / "h").unlink()))
    out.append(await do(lambda: (p / "a" / "h").unlink()))
    out.append(await do(lambda: (p / "a" / "h").unlink(missing_ok=True)))
    out.append(await do(lambda: (p / "a").rmdir()))
    out.append(await do(lambda: (p / "a" / "b").rmdir()))
    out.append(await do(lambda: (p / "a" / "b").exists()))
    out.append(await do(lambda: (p / "l").symlink_to(p / "a")))
    out.append(await do(lambda: (p / "l").is_symlink()))
    out.append(await do(lambda: (p / "a").chmod(0o700)))
    out.append(await do(lambda: (p / "a").samefile(p / "l")))
    return out


async def test_mutations_match_pathlib(tmp_path: pathlib.Path) -> None:
    async def do_sync(fn: Callable[[], Any]) -> Any:
        return _sync(fn)

    results: dict[str, list[Any]] = {}
    for side in ("sync", "async"):
        root = tmp_path / side
        root.mkdir()
        if side == "sync":
            out = await _mutations(root, do_sync)
        else:
            out = await _mutations(corral.Path(root), _async)
        text = [repr(r) for r in out]
        name = str(root)
        # Each repr level (an OSError's str, then repr) doubles the
        # backslashes of a Windows path.
        for _ in range(3):
            text = [t.replace(name, "<root>") for t in text]
            name = name.replace("\\", "\\\\")
        results[side] = text
    assert results["async"] == results["sync"]
    if os.name != "nt":  # Windows keeps only the read-only bit of a mode
        assert stat.S_IMODE((tmp_path / "async" / "a").stat().st_mode) == 0o700


@pytest.mark.skipif(os.name == "nt", reason="POSIX path syntax (Windows paths have drives)")
async def test_pure_methods_stay_sync_and_typed() -> None:
    p = corral.Path("/a/b/c.txt")
    assert isinstance(p, corral.PosixPath)
    assert repr(p) == "corral.Path('/a/b/c.txt')"
    assert isinstance(p.parent, corral.Path)
    assert p.with_suffix(".md").name == "c.md"
    assert p.as_uri() == "file:///a/b/c.txt"
    assert str(p / "d") == "/a/b/c.txt/d"
    assert p == corral.Path("/a/b/c.txt") and hash(p) == hash(corral.Path("/a/b/c.txt"))
    assert isinstance(await corral.Path.cwd(), corral.Path)
    assert isinstance(await corral.Path.home(), corral.Path)
    assert str(await corral.Path("~").expanduser()) == str(pathlib.Path("~").expanduser())


async def test_open_returns_corral_files(tmp_path: pathlib.Path) -> None:
    p = corral.Path(tmp_path / "f")
    async with await p.open("w") as f:
        await f.write("one\ntwo\n")
    async with await p.open() as f:
        assert [line async for line in f] == ["one\n", "two\n"]
    async with await p.open("rb") as f:
        assert await f.read(3) == b"one"


async def test_io_uring_path_ops_use_no_thread(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if current_engine() != "io_uring":
        pytest.skip("io_uring only (a Linux kernel interface)")
    p = corral.Path(tmp_path)
    with no_worker_threads(monkeypatch):
        await (p / "d").mkdir()
        await (p / "d" / "f").write_bytes(b"x")
        await (p / "d" / "t").touch(exist_ok=False)
        assert await (p / "d" / "f").read_bytes() == b"x"
        assert await (p / "d" / "f").is_file()
        assert (await (p / "d" / "f").stat()).st_size == 1
        await (p / "d" / "f").rename(p / "d" / "g")
        await (p / "d" / "g").unlink()
        await (p / "d" / "t").unlink()
        await (p / "d").rmdir()
        assert not await (p / "d").exists()
