"""Echo server on uvloop streams: asyncio_server.py's program on uvloop."""

from __future__ import annotations

from asyncio_server import run

if __name__ == "__main__":
    run(use_uvloop=True)
