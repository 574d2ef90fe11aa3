"""A line-based chat server: what one client types, every other client sees.

    python examples/chat_server.py [--port 12346] [--host 127.0.0.1] [--backend io_uring|epoll]

Connect with ``nc 127.0.0.1 12346`` from two or more terminals and type.
``/nick NAME`` changes your name, ``/quit`` leaves. Stop the server with
Ctrl-C. ``python examples/chat_server.py --selftest`` starts the server on
a free port, has three scripted clients chat, checks what each one saw and
exits 0 (1 on a mismatch).

The structure is Trio's:

* one **hub** task owns the room: it receives every message on one memory
  channel and forwards it to each member's own memory channel. Nothing is
  shared between tasks except through channels.
* each connection gets a **nursery** with two tasks: a reader (lines from
  the socket to the hub) and a writer (the member's channel to the
  socket). When either ends (the client left, or its connection broke),
  it cancels the other, and the member leaves the room.
* a member whose channel is full (a client that does not read) is
  disconnected rather than allowed to slow the room down or grow memory
  without bound: backpressure with a clear policy.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import AsyncIterator
from itertools import count

import attrs

import corral

#: Messages a member may have waiting before it counts as stuck.
MEMBER_BUFFER = 64
MAX_LINE = 4096


@attrs.define(eq=False)
class Member:
    name: str
    outbox: corral.MemorySendChannel[bytes]
    kicked: corral.CancelScope = attrs.field(factory=corral.CancelScope)


@attrs.define(eq=False)
class Room:
    """The hub's state. Only the hub task and join/leave touch it, all in
    one corral run (tasks switch only at awaits, so no lock is needed)."""

    members: set[Member] = attrs.field(factory=set)

    def broadcast(self, line: bytes, sender: Member | None = None) -> None:
        for member in list(self.members):
            if member is sender:
                continue
            try:
                member.outbox.send_nowait(line)
            except corral.WouldBlock:
                # A client that does not read: disconnect it.
                member.kicked.cancel(reason="too slow")
                self.members.discard(member)
            except (corral.BrokenResourceError, corral.ClosedResourceError):
                self.members.discard(member)


async def lines(stream: corral.SocketStream) -> AsyncIterator[bytes]:
    """The stream's lines (without the newline), up to MAX_LINE bytes."""
    buffer = bytearray()
    async for data in stream:
        buffer += data
        while (end := buffer.find(b"\n")) >= 0:
            yield bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
        if len(buffer) > MAX_LINE:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


class ChatServer:
    def __init__(self) -> None:
        self.room = Room()
        self.ids = count(1)
        self.hub_in, self.hub_out = corral.open_memory_channel[tuple[Member | None, bytes]](1024)

    async def hub(self) -> None:
        async for sender, line in self.hub_out:
            self.room.broadcast(line, sender)

    async def handle(self, stream: corral.SocketStream) -> None:
        outbox, inbox = corral.open_memory_channel[bytes](MEMBER_BUFFER)
        member = Member(f"guest{next(self.ids)}", outbox)
        with member.kicked:
            try:
                async with corral.open_nursery() as nursery:
                    nursery.start_soon(self.writer, stream, inbox, nursery.cancel_scope)
                    await outbox.send(
                        f"* welcome, {member.name} ({len(self.room.members)} here)\n".encode()
                    )
                    self.room.members.add(member)
                    await self.hub_in.send((member, f"* {member.name} joined\n".encode()))
                    await self.reader(stream, member)
                    nursery.cancel_scope.cancel()
            except corral.BrokenResourceError:
                pass  # the connection broke: the member just leaves
            finally:
                self.room.members.discard(member)
                outbox.close()
        # Outside the member's scope: a kicked member still says goodbye.
        with corral.CancelScope(shield=True):
            await self.hub_in.send((None, f"* {member.name} left\n".encode()))

    async def reader(self, stream: corral.SocketStream, member: Member) -> None:
        async for line in lines(stream):
            text = line.decode("utf-8", "replace")
            if text == "/quit":
                return
            if text.startswith("/nick "):
                old, member.name = member.name, text[6:].strip() or member.name
                await self.hub_in.send((member, f"* {old} is now {member.name}\n".encode()))
                continue
            await self.hub_in.send((member, f"<{member.name}> {text}\n".encode()))

    @staticmethod
    async def writer(
        stream: corral.SocketStream,
        inbox: corral.MemoryReceiveChannel[bytes],
        scope: corral.CancelScope,
    ) -> None:
        async for line in inbox:
            await stream.send_all(line)
        scope.cancel()


async def serve(
    host: str,
    port: int,
    *,
    task_status: corral.TaskStatus[list[corral.SocketListener]] = corral.TASK_STATUS_IGNORED,
) -> None:
    server = ChatServer()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(server.hub)
        listeners = await nursery.start(
            functools.partial(corral.serve_tcp, server.handle, port, host=host)
        )
        task_status.started(listeners)


async def main(host: str, port: int) -> None:
    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(serve, host, port)
        for listener in listeners:
            print(f"chat server: listening on {listener.socket.getsockname()}", flush=True)


async def selftest() -> int:
    """Three scripted clients on a server on a free port."""

    async def read_line(stream: corral.SocketStream, pending: bytearray) -> str:
        while b"\n" not in pending:
            data = await stream.receive_some()
            if not data:
                raise EOFError
            pending += data
        line, _, rest = bytes(pending).partition(b"\n")
        pending[:] = rest
        return line.decode()

    with corral.fail_after(10):
        async with corral.open_nursery() as nursery:
            (listener,) = await nursery.start(serve, "127.0.0.1", 0)
            port = listener.socket.getsockname()[1]
            clients = []
            for _ in range(3):
                stream = await corral.open_tcp_stream("127.0.0.1", port)
                buf = bytearray()
                clients.append((stream, buf))
                await read_line(stream, buf)  # the welcome line
            alice, bob, carol = clients
            # Wait until everyone saw everyone join.
            assert await read_line(*alice) == "* guest2 joined"
            assert await read_line(*alice) == "* guest3 joined"
            assert await read_line(*bob) == "* guest3 joined"
            await alice[0].send_all(b"/nick alice\nhello room\n")
            for who in (bob, carol):
                assert await read_line(*who) == "* guest1 is now alice"
                assert await read_line(*who) == "<alice> hello room"
            await bob[0].send_all(b"/quit\n")
            try:
                await read_line(*bob)
                raise AssertionError("the server did not close bob's connection")
            except EOFError:
                pass
            for who in (alice, carol):
                assert await read_line(*who) == "* guest2 left"
            for stream, _ in clients:
                await stream.aclose()
            nursery.cancel_scope.cancel()
    print("chat server: selftest passed")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12346)
    parser.add_argument("--backend", default=None, help="corral backend (default: the best one)")
    parser.add_argument("--selftest", action="store_true", help="run a scripted chat and exit")
    args = parser.parse_args()
    if args.selftest:
        sys.exit(corral.run(selftest, backend=args.backend))
    try:
        corral.run(main, args.host, args.port, backend=args.backend)
    except KeyboardInterrupt:
        print("chat server: bye")
