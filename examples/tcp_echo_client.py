"""A client for tcp_echo_server.py: sends lines, checks they come back.

    python examples/tcp_echo_server.py &
    python examples/tcp_echo_client.py [--port 12345] [--host 127.0.0.1] [--count 5]

A sender task and a receiver task share one :class:`corral.SocketStream`
(a stream can send and receive at the same time); the receiver checks that
every byte sent came back, in order. Exits 0 when it did, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

import corral


async def sender(stream: corral.SocketStream, messages: list[bytes]) -> None:
    for message in messages:
        print(f"echo client: sending {message!r}")
        await stream.send_all(message)
        await corral.sleep(0.2)
    # Tell the server we are done; it answers by closing its side.
    await stream.send_eof()


async def receiver(stream: corral.SocketStream) -> bytes:
    got = bytearray()
    async for data in stream:
        print(f"echo client: received {bytes(data)!r}")
        got += data
    return bytes(got)


async def main(host: str, port: int, count: int) -> int:
    messages = [f"hello {i}\n".encode() for i in range(count)]
    expected = b"".join(messages)
    with corral.fail_after(10):  # a server that stops answering is an error
        stream = await corral.open_tcp_stream(host, port)
        async with stream:
            result: list[bytes] = []

            async def receive() -> None:
                result.append(await receiver(stream))

            async with corral.open_nursery() as nursery:
                nursery.start_soon(sender, stream, messages)
                nursery.start_soon(receive)
    if result[0] == expected:
        print(f"echo client: all {len(expected)} bytes came back")
        return 0
    print(f"echo client: MISMATCH: sent {expected!r}, got {result[0]!r}")
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12345)
    parser.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    sys.exit(corral.run(main, args.host, args.port, args.count))
