"""send_file: exact bytes for any range, on every engine, across cancellation."""

from __future__ import annotations

import os
import pathlib
import random
from typing import Any

import pytest
from file_helpers import (  # noqa: F401  (file_engine: autouse fixture)
    file_engine,
    no_fd_leak,
    run_on_engine,
)

import corral
from corral._sendfile import send_file, tcp_pair
from corral.testing import wait_all_tasks_blocked

pytestmark = pytest.mark.corral(run=run_on_engine)

DATA = random.Random(5).randbytes(3 * 1024 * 1024 + 17)


@pytest.fixture
def data_file(tmp_path: pathlib.Path) -> pathlib.Path:
    p = tmp_path / "data"
    p.write_bytes(DATA)
    return p


async def _transfer(data_file: pathlib.Path, **kwargs: Any) -> tuple[int, bytes]:
    a, b = tcp_pair()
    sender = corral.socket.from_stdlib_socket(a)
    receiver = corral.socket.from_stdlib_socket(b)
    got = bytearray()
    sent = -1
    async with corral.open_nursery() as nursery:

        async def receive() -> None:
            while chunk := await receiver.recv(1 << 16):
                got.extend(chunk)

        nursery.start_soon(receive)
        async with await corral.open_file(data_file, "rb") as f:
            sent = await send_file(sender, f, **kwargs)
            assert await f.tell() == 0  # the file position is not used
        sender.close()
    receiver.close()
    return sent, bytes(got)


@pytest.mark.parametrize(
    ("offset", "count"),
    [(0, None), (1, 1), (7, 65537), (12345, 1 << 20), (3, len(DATA) - 3), (len(DATA) - 5, 100),
     (len(DATA), None), (len(DATA) + 10, 5), (4095, 2 * 1024 * 1024 + 1)],
)  # fmt: skip
async def test_exact_bytes(data_file: pathlib.Path, offset: int, count: int | None) -> None:
    with no_fd_leak():
        sent, got = await _transfer(data_file, offset=offset, count=count)
    end = len(DATA) if count is None else offset + count
    assert got == DATA[offset:end]
    assert sent == len(got)


async def test_fd_arguments(data_file: pathlib.Path) -> None:
    a, b = tcp_pair()
    fd = os.open(data_file, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # (Windows: not text mode)
    try:
        async with corral.open_nursery() as nursery:
            got = bytearray()

            async def receive() -> None:
                r = corral.socket.from_stdlib_socket(b)
                while chunk := await r.recv(1 << 16):
                    got.extend(chunk)

            nursery.start_soon(receive)
            assert await send_file(a.fileno(), fd, 10, 1000) == 1000
            a.close()
        assert bytes(got) == DATA[10:1010]
    finally:
        os.close(fd)
        b.close()


async def test_bad_arguments(data_file: pathlib.Path) -> None:
    a, b = tcp_pair()
    try:
        with pytest.raises(ValueError, match=r"^negative offset: -1$"):
            await send_file(a, os.open(os.devnull, os.O_RDONLY), -1)
        with pytest.raises(ValueError, match=r"^negative count: -2$"):
            await send_file(a, 0, 0, -2)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("seed", range(6))
async def test_cancellation_leaves_an_exact_prefix(data_file: pathlib.Path, seed: int) -> None:
    # Small socket buffers and a receiver that is not reading yet: the
    # transfer has to wait for the socket; a cancel at a random point stops
    # it. What arrived must be an exact prefix of the range.
    import socket as stdlib_socket

    a, b = tcp_pair()
    a.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 32768)
    b.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 32768)
    sender = corral.socket.from_stdlib_socket(a)
    receiver = corral.socket.from_stdlib_socket(b)
    offset = 333 + seed
    steps = random.Random(seed).randrange(30)
    with no_fd_leak():
        async with await corral.open_file(data_file, "rb") as f:
            with corral.CancelScope() as scope:

                async def cancel_later() -> None:
                    if steps:
                        for _ in range(steps):
                            await corral.lowlevel.checkpoint()
                    else:
                        await wait_all_tasks_blocked()
                    scope.cancel()

                async with corral.open_nursery() as nursery:
                    nursery.start_soon(cancel_later)
                    await send_file(sender, f, offset)
            assert scope.cancelled_caught
        sender.close()
        got = bytearray()
        while chunk := await receiver.recv(1 << 16):
            got.extend(chunk)
        receiver.close()
    assert len(got) < len(DATA) - offset
    assert bytes(got) == DATA[offset : offset + len(got)]
