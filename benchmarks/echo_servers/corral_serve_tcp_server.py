"""Echo server on corral streams: ``corral.serve_tcp`` + ``receive_some`` /
``send_all``: trio_server.py with the import changed. ``--backend
io_uring|epoll`` picks corral's backend."""

from __future__ import annotations

import functools

from _common import RECV_SIZE, announce, parse_args

import corral


async def handle(stream: corral.SocketStream) -> None:
    try:
        while True:
            data = await stream.receive_some(RECV_SIZE)
            if not data:
                return
            await stream.send_all(data)
    except corral.BrokenResourceError:
        pass


async def main(port: int) -> None:
    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(corral.serve_tcp, handle, port, host="127.0.0.1")
        )
        announce(listeners[0].socket.getsockname()[1])


if __name__ == "__main__":
    args = parse_args()
    corral.run(main, args.port, backend=args.backend)
