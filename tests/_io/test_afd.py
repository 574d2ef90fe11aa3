"""The AFD readiness adapter (``backend="afd"``): socket ops are non-blocking
Winsock attempts plus ``IOCTL_AFD_POLL`` waits, never overlapped calls. The
statistics prove which path ran. The completion contract itself is checked
on ``afd`` by ``test_contract.py``.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

import pytest
from iohelpers import run_on

from corral._core import open_nursery, wait_all_tasks_blocked
from corral._io.ops import AcceptOp, ConnectOp, RecvOp, RecvPoolOp, SendOp
from corral._io.perform import current_backend, perform

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="the AFD adapter is Windows-only")


def _counters() -> tuple[Any, dict[str, int]]:
    backend: Any = current_backend()
    return backend.iocp_statistics(), backend.afd_statistics()


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_afd_is_selected_by_name_and_reports_itself() -> None:
    from corral._io._select import make_io_manager_factory

    manager = make_io_manager_factory("afd")(guest=False)
    try:
        stats = manager.statistics()
        assert stats.backend == "afd"
        assert stats.features == ("afd-poll", "readiness")
    finally:
        manager.close()


def test_data_already_there_needs_no_poll() -> None:
    async def main() -> Any:
        a, b = _pair()
        with a, b:
            a.send(b"ready")
            buf = bytearray(8)
            assert await perform(RecvOp(b.fileno(), buf)) == 5
            return _counters()

    stats, afd = run_on("afd", main)
    assert afd == {"attempts": 1, "would_block": 0}
    assert stats.afd_polls == 0
    assert stats.overlapped_calls == 0


def test_waiting_receive_polls_then_retries() -> None:
    async def main() -> Any:
        a, b = _pair()
        with a, b:
            got: list[Any] = []
            async with open_nursery() as nursery:

                async def receiver() -> None:
                    got.append(await perform(RecvPoolOp(b.fileno())))

                nursery.start_soon(receiver)
                await wait_all_tasks_blocked()
                # Waiting for readiness holds no pool buffer.
                assert current_backend().pool.statistics().in_use == 0
                a.send(b"late")
            assert bytes(got[0]) == b"late"
            got[0].release()
            return _counters()

    stats, afd = run_on("afd", main)
    assert afd == {"attempts": 2, "would_block": 1}
    assert stats.afd_polls == 1
    assert stats.overlapped_calls == 0
    assert stats.zero_byte_receives == 0


def test_accept_and_connect_through_readiness() -> None:
    async def main() -> Any:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        with listener, client:
            accepted: list[int] = []
            async with open_nursery() as nursery:

                async def accept() -> None:
                    accepted.append(await perform(AcceptOp(listener.fileno())))

                nursery.start_soon(accept)
                await wait_all_tasks_blocked()
                await perform(ConnectOp(client.fileno(), socket.AF_INET, listener.getsockname()))
            with socket.socket(fileno=accepted[0]) as server:
                assert server.getpeername() == client.getsockname()
                assert await perform(SendOp(client.fileno(), b"hi")) == 2
                buf = bytearray(4)
                assert await perform(RecvOp(server.fileno(), buf)) == 2
            return _counters()

    stats, _ = run_on("afd", main)
    assert stats.overlapped_calls == 0
    assert stats.afd_polls >= 1


def test_refused_connect_reports_so_error() -> None:
    async def main() -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
        probe.close()
        with socket.socket() as client:
            with pytest.raises(ConnectionRefusedError) as info:
                await perform(ConnectOp(client.fileno(), socket.AF_INET, address))
            assert info.value.errno == errno.ECONNREFUSED

    run_on("afd", main)
