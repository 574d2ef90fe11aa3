"""Echo server on ``corral.socket`` (accept / recv / send, no streams):
trio_socket_server.py with the import changed. ``--backend io_uring|epoll``
picks corral's backend."""

from __future__ import annotations

import socket as stdlib_socket

from _common import RECV_SIZE, announce, parse_args

import corral


async def handle(conn: corral.socket.SocketType) -> None:
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
    listener = corral.socket.socket()
    listener.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
    await listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    announce(listener.getsockname()[1])
    async with corral.open_nursery() as nursery:
        while True:
            conn, _ = await listener.accept()
            conn.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
            nursery.start_soon(handle, conn)


if __name__ == "__main__":
    args = parse_args()
    corral.run(main, args.port, backend=args.backend)
