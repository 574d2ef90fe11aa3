"""Helpers shared by the epoll adapter's tests (test_epoll*.py)."""

from __future__ import annotations

import socket
from typing import Any

from iohelpers import run_on

from corral._core import cancel_shielded_checkpoint
from corral._io.epoll import EpollBackend
from corral._io.perform import current_backend


def epoll() -> EpollBackend:
    backend = current_backend()
    assert isinstance(backend, EpollBackend)
    return backend


def run(fn: Any, **options: Any) -> Any:
    return run_on("epoll", fn, **options)


def socketpair(blocking: bool = False) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(blocking)
    b.setblocking(blocking)
    return a, b


def fill(sock: socket.socket) -> int:
    """Fill ``sock``'s send buffer; return how many bytes went in."""
    sock.setblocking(False)
    total = 0
    try:
        while True:
            total += sock.send(b"x" * 65536)
    except BlockingIOError:
        pass
    return total


def drain(sock: socket.socket) -> int:
    sock.setblocking(False)
    total = 0
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    except BlockingIOError:
        pass
    return total


async def turns_until(predicate: Any, limit: int = 10000) -> None:
    for _ in range(limit):
        if predicate():
            return
        await cancel_shielded_checkpoint()
    raise AssertionError("condition never became true")
