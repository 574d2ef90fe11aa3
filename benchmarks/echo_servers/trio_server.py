"""Echo server on Trio streams: ``trio.serve_tcp`` + ``receive_some`` /
``send_all`` (the baseline of bench_echo.py)."""

from __future__ import annotations

import functools

import trio
from _common import RECV_SIZE, announce, parse_args


async def handle(stream: trio.SocketStream) -> None:
    try:
        while True:
            data = await stream.receive_some(RECV_SIZE)
            if not data:
                return
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handle, port, host="127.0.0.1")
        )
        announce(listeners[0].socket.getsockname()[1])


if __name__ == "__main__":
    trio.run(main, parse_args().port)
