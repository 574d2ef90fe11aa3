"""A TCP echo server: every byte a client sends comes back to it.

    python examples/tcp_echo_server.py [--port 12345] [--host 127.0.0.1] [--backend io_uring|epoll]

Then, from another terminal, ``python examples/tcp_echo_client.py`` (or
``nc 127.0.0.1 12345``). Stop it with Ctrl-C.

One task per connection, started by :func:`corral.serve_tcp`; a client that
goes away (reset, or closed mid-send) ends only its own task. Only the
import differs from the same server written for Trio.
"""

from __future__ import annotations

import argparse
import functools
from itertools import count

import corral

CONNECTION_COUNTER = count()


async def echo(stream: corral.SocketStream) -> None:
    ident = next(CONNECTION_COUNTER)
    peer = stream.socket.getpeername()
    print(f"echo server {ident}: connection from {peer}")
    try:
        # Iterating a stream yields chunks until the client sends EOF.
        async for data in stream:
            await stream.send_all(data)
        print(f"echo server {ident}: client sent EOF")
    except corral.BrokenResourceError as exc:
        print(f"echo server {ident}: connection broke: {exc}")
    # serve_tcp closes the stream when this returns.


async def main(host: str, port: int) -> None:
    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(corral.serve_tcp, echo, port, host=host))
        for listener in listeners:
            print(f"echo server: listening on {listener.socket.getsockname()}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12345)
    parser.add_argument("--backend", default=None, help="corral backend (default: the best one)")
    args = parser.parse_args()
    try:
        corral.run(main, args.host, args.port, backend=args.backend)
    except KeyboardInterrupt:
        print("echo server: bye")
