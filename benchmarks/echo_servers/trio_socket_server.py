"""Echo server on ``trio.socket`` (accept / recv / send, no streams): the
same program as corral_socket_server.py, for a like-for-like row."""

from __future__ import annotations

import socket as stdlib_socket

import trio
from _common import RECV_SIZE, announce, parse_args


async def handle(conn: trio.socket.SocketType) -> None:
    with conn:
        try:
            while True:
                data = await conn.recv(RECV_SIZE)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[await conn.send(view) :]
        except OSError:
            pass


async def main(port: int) -> None:
    listener = trio.socket.socket()
    listener.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
    await listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    announce(listener.getsockname()[1])
    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await listener.accept()
            conn.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
            nursery.start_soon(handle, conn)


if __name__ == "__main__":
    trio.run(main, parse_args().port)
