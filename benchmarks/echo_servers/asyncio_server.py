"""Echo server on asyncio streams: ``asyncio.start_server`` +
``reader.read`` / ``writer.write`` / ``await writer.drain()``.
``--uvloop`` runs the same program on uvloop (uvloop_server.py)."""

from __future__ import annotations

import asyncio
import sys

from _common import RECV_SIZE, announce, parse_args


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(RECV_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    # asyncio sets TCP_NODELAY on every TCP transport itself.
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    announce(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def run(use_uvloop: bool) -> None:
    port = parse_args().port
    if use_uvloop:
        import uvloop

        uvloop.run(main(port))
    else:
        asyncio.run(main(port))


if __name__ == "__main__":
    run("--uvloop" in sys.argv)
