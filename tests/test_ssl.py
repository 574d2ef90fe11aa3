"""SSLStream and SSLListener over in-memory transports (memory and lockstep
streams), with certificates made by trustme."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs
import pytest
import trustme

import corral
from corral import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    NeedHandshakeError,
    SSLListener,
    SSLStream,
    StapledStream,
)
from corral.abc import Listener, ReceiveStream, SendStream, Stream
from corral.testing import (
    MemoryReceiveStream,
    MemorySendStream,
    Sequencer,
    assert_checkpoints,
    check_two_way_stream,
    lockstep_stream_pair,
    memory_stream_pair,
    wait_all_tasks_blocked,
)

HOSTNAME = "corral-test-1.example.org"
CA = trustme.CA()
SERVER_CERT = CA.issue_cert(HOSTNAME)


def _strict_eof(ctx: ssl.SSLContext) -> ssl.SSLContext:
    # Newer Pythons may set OP_IGNORE_UNEXPECTED_EOF, which would hide the
    # truncation errors these tests are about.
    if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


SERVER_CTX = _strict_eof(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
SERVER_CERT.configure_cert(SERVER_CTX)


# TLS 1.3 and 1.2 differ a lot (session tickets after the handshake, key
# schedule, close behaviour): run everything under both.
@pytest.fixture(params=["tls13", "tls12"])
def client_ctx(request: pytest.FixtureRequest) -> ssl.SSLContext:
    ctx = _strict_eof(ssl.create_default_context())
    CA.configure_trust(ctx)
    if request.param == "tls12":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


MemoryStapled = StapledStream[MemorySendStream, MemoryReceiveStream]
LockstepStapled = StapledStream[SendStream, ReceiveStream]


def wrap_pair(
    client_ctx: ssl.SSLContext,
    client_transport: Stream,
    server_transport: Stream,
    *,
    client_kwargs: dict[str, Any] | None = None,
    server_kwargs: dict[str, Any] | None = None,
) -> tuple[SSLStream[Any], SSLStream[Any]]:
    client = SSLStream(
        client_transport, client_ctx, server_hostname=HOSTNAME, **(client_kwargs or {})
    )
    server = SSLStream(server_transport, SERVER_CTX, server_side=True, **(server_kwargs or {}))
    return client, server


def ssl_memory_pair(
    client_ctx: ssl.SSLContext, **kwargs: Any
) -> tuple[SSLStream[MemoryStapled], SSLStream[MemoryStapled]]:
    return wrap_pair(client_ctx, *memory_stream_pair(), **kwargs)


def ssl_lockstep_pair(
    client_ctx: ssl.SSLContext, **kwargs: Any
) -> tuple[SSLStream[LockstepStapled], SSLStream[LockstepStapled]]:
    return wrap_pair(client_ctx, *lockstep_stream_pair(), **kwargs)


async def handshake_both(client: SSLStream[Any], server: SSLStream[Any]) -> None:
    async with corral.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


# --------------------------------------------------------------------------
# basics


async def test_handshake_and_data_both_ways(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    assert not client.server_side
    assert server.server_side

    async def client_side() -> None:
        await client.send_all(b"hello")
        assert await client.receive_some(10) == b"world"
        await client.aclose()

    async def server_side() -> None:
        assert await server.receive_some(5) == b"hello"
        await server.send_all(b"world")
        assert await server.receive_some(10) == b""
        await server.aclose()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client_side)
        nursery.start_soon(server_side)

    wanted = "TLSv1.2" if client_ctx.maximum_version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    assert client.version() == wanted == server.version()


async def test_data_is_encrypted_on_the_wire(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = memory_stream_pair()
    wire = bytearray()

    async def tap() -> None:
        # Deliver as the default pump does, keeping a copy.
        data = client_transport.send_stream.get_data_nowait()
        wire.extend(data)
        server_transport.receive_stream.put_data(data)

    client_transport.send_stream.send_all_hook = tap
    client, server = wrap_pair(client_ctx, client_transport, server_transport)
    secret = b"the secret payload " * 10

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client.send_all, secret)
        got = bytearray()
        while len(got) < len(secret):
            got += await server.receive_some()
    assert got == secret
    assert len(wire) > len(secret)
    assert b"secret payload" not in wire


async def test_bad_certificates_break_the_stream(client_ctx: ssl.SSLContext) -> None:
    untrusting_ctx = ssl.create_default_context()

    async def attempt(ctx: ssl.SSLContext, hostname: str) -> BaseException:
        client_transport, server_transport = memory_stream_pair()
        client = SSLStream(client_transport, ctx, server_hostname=hostname)
        server = SSLStream(server_transport, SERVER_CTX, server_side=True)

        async def server_side() -> None:
            with pytest.raises(BrokenResourceError):
                await server.do_handshake()

        async with corral.open_nursery() as nursery:
            nursery.start_soon(server_side)
            with pytest.raises(BrokenResourceError) as excinfo:
                await client.send_all(b"x")
            # ...and the stream stays broken.
            with pytest.raises(BrokenResourceError):
                await client.send_all(b"x")
            with pytest.raises(BrokenResourceError):
                await client.receive_some()
            # Closing a broken stream just closes the transport: the server
            # sees EOF mid-handshake.
            await client.aclose()
        cause = excinfo.value.__cause__
        assert cause is not None
        return cause

    cause = await attempt(untrusting_ctx, HOSTNAME)
    assert isinstance(cause, ssl.SSLError)
    cause = await attempt(client_ctx, "corral-test-2.example.org")
    assert isinstance(cause, ssl.CertificateError)


async def test_forwarded_attributes(client_ctx: ssl.SSLContext) -> None:
    transport, _ = memory_stream_pair()
    s = SSLStream(transport, client_ctx, server_hostname=HOSTNAME)
    assert s.transport_stream is transport
    assert s.context is client_ctx
    assert s.server_side is False
    assert s.server_hostname == HOSTNAME
    assert s.pending() == 0
    with pytest.raises(AttributeError):
        s.no_such_attribute  # noqa: B018
    assert "transport_stream" in dir(s)
    assert "context" in dir(s)
    assert "getpeercert" in dir(s)

    # Read-only on SSLObject, so read-only here.
    with pytest.raises(AttributeError):
        s.server_side = True
    with pytest.raises(AttributeError):
        s.server_hostname = "other"

    # context is settable, and really reaches the SSLObject: an untrusting
    # context makes the handshake fail.
    bad_ctx = ssl.create_default_context()
    s.context = bad_ctx
    assert s.context is bad_ctx
    assert s._ssl_object.context is bad_ctx


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("getpeercert", ()),
        ("selected_alpn_protocol", ()),
        ("selected_npn_protocol", ()),
        ("cipher", ()),
        ("shared_ciphers", ()),
        ("compression", ()),
        ("version", ()),
        ("get_channel_binding", ()),
        ("session_reused", None),
    ],
)
@pytest.mark.filterwarnings("ignore:ssl NPN is deprecated:DeprecationWarning")
async def test_need_handshake_error(
    client_ctx: ssl.SSLContext, name: str, args: tuple[object, ...] | None
) -> None:
    client, server = ssl_memory_pair(client_ctx)
    for s in (client, server):
        with pytest.raises(
            NeedHandshakeError, match=rf"^call do_handshake\(\) before calling '{name}'$"
        ):
            getattr(s, name)
    await handshake_both(client, server)
    for s in (client, server):
        value = getattr(s, name)
        if args is not None:
            value(*args)


async def test_after_handshake_values(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    await handshake_both(client, server)
    assert client.selected_alpn_protocol() is None
    assert server.selected_alpn_protocol() is None
    assert client.get_channel_binding() is not None
    assert client.get_channel_binding() == server.get_channel_binding()
    assert server.getpeercert() is None  # no client certificate
    assert ("DNS", HOSTNAME) in client.getpeercert()["subjectAltName"]
    assert client.cipher() is not None


async def test_alpn_negotiation(client_ctx: ssl.SSLContext) -> None:
    server_ctx = _strict_eof(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
    SERVER_CERT.configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    client_ctx.set_alpn_protocols(["http/1.1"])
    client_transport, server_transport = memory_stream_pair()
    client = SSLStream(client_transport, client_ctx, server_hostname=HOSTNAME)
    server = SSLStream(server_transport, server_ctx, server_side=True)
    await handshake_both(client, server)
    assert client.selected_alpn_protocol() == "http/1.1"
    assert server.selected_alpn_protocol() == "http/1.1"


def test_server_hostname_uses_idna_2008(client_ctx: ssl.SSLContext) -> None:
    transport, _ = memory_stream_pair()
    s = SSLStream(transport, client_ctx, server_hostname="faß.de")
    # IDNA 2003 (the stdlib codec) would map ß to "ss": fass.de.
    assert s.server_hostname == "xn--fa-hia.de"
    s2 = SSLStream(transport, client_ctx, server_hostname=b"raw.example")
    assert s2.server_hostname == "raw.example"


# --------------------------------------------------------------------------
# concurrency, checkpoints


async def test_full_duplex_with_concurrent_handshakes(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    chunks, chunk_size = 30, 32768
    expected = b"".join(bytes([i]) * chunk_size for i in range(chunks))

    async def sender(s: Stream) -> None:
        for i in range(chunks):
            await s.send_all(bytes([i]) * chunk_size)

    async def receiver(s: Stream, into: bytearray) -> None:
        while len(into) < len(expected):
            into += await s.receive_some(chunk_size // 2)

    at_server = bytearray()
    at_client = bytearray()
    async with corral.open_nursery() as nursery:
        nursery.start_soon(sender, client)
        nursery.start_soon(receiver, server, at_server)
        nursery.start_soon(sender, server)
        nursery.start_soon(receiver, client, at_client)
        # Extra handshake calls from other tasks just wait for the one in
        # progress.
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    assert at_server == expected
    assert at_client == expected


async def test_busy_resource_errors(client_ctx: ssl.SSLContext) -> None:
    async def send(s: SSLStream[Any]) -> None:
        with assert_checkpoints():
            await s.send_all(b"x")

    async def receive(s: SSLStream[Any]) -> None:
        with assert_checkpoints():
            await s.receive_some(1)

    async def wait(s: SSLStream[Any]) -> None:
        with assert_checkpoints():
            await s.wait_send_all_might_not_block()

    Op = Callable[[SSLStream[Any]], Awaitable[None]]

    async def check(op1: Op, op2: Op, message: str) -> None:
        s, _ = ssl_lockstep_pair(client_ctx)
        with pytest.raises(BaseExceptionGroup) as excinfo:
            async with corral.open_nursery() as nursery:
                nursery.start_soon(op1, s)
                nursery.start_soon(op2, s)
        assert len(excinfo.value.exceptions) == 1
        exc = excinfo.value.exceptions[0]
        assert isinstance(exc, BusyResourceError)
        assert str(exc) == message

    sending = "another task is currently sending data on this SSLStream"
    receiving = "another task is currently receiving data on this SSLStream"
    await check(send, send, sending)
    await check(receive, receive, receiving)
    await check(send, wait, sending)
    await check(wait, wait, sending)


async def test_unwrap_conflicts_with_send_and_receive(client_ctx: ssl.SSLContext) -> None:
    for op in ("send_all", "receive_some"):
        client, _server = ssl_lockstep_pair(client_ctx)
        with pytest.raises(BaseExceptionGroup) as excinfo:
            async with corral.open_nursery() as nursery:
                if op == "send_all":
                    nursery.start_soon(client.send_all, b"x")
                else:
                    nursery.start_soon(client.receive_some)
                await wait_all_tasks_blocked()
                nursery.start_soon(client.unwrap)
        assert [type(e) for e in excinfo.value.exceptions] == [BusyResourceError]


async def test_wait_send_all_might_not_block_delegates() -> None:
    record: list[str] = []

    class WaitOnly(Stream):
        async def wait_send_all_might_not_block(self) -> None:
            record.append("ok")

        async def aclose(self) -> None:
            raise AssertionError("not called")

        async def receive_some(self, max_bytes: int | None = None) -> bytes:
            raise AssertionError("not called")

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            raise AssertionError("not called")

    s = SSLStream(WaitOnly(), ssl.create_default_context(), server_hostname="x")
    await s.wait_send_all_might_not_block()
    assert record == ["ok"]


async def test_checkpoints(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)

    async def server_side() -> None:
        await server.do_handshake()
        assert await server.receive_some() == b"xxx"
        await server.send_all(b"xxx")
        await server.unwrap()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(server_side)
        with assert_checkpoints():
            await client.do_handshake()
        with assert_checkpoints():
            await client.do_handshake()
        with assert_checkpoints():
            await client.wait_send_all_might_not_block()
        with assert_checkpoints():
            await client.send_all(b"xxx")
        with assert_checkpoints():
            assert await client.receive_some(1) == b"x"
        # The rest of the record is already decrypted inside the SSLObject:
        # these complete without I/O, and still checkpoint.
        with assert_checkpoints():
            assert await client.receive_some(1) == b"x"
        with assert_checkpoints():
            assert await client.receive_some(1) == b"x"
        with assert_checkpoints():
            await client.unwrap()

    client, server = ssl_memory_pair(client_ctx)
    await handshake_both(client, server)
    with assert_checkpoints():
        await client.aclose()


async def test_send_all_empty_is_not_eof(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    await handshake_both(client, server)
    with assert_checkpoints():
        await client.send_all(b"")
    with assert_checkpoints():
        await client.send_all(b"")
    await client.send_all(b"x")
    assert await server.receive_some(1) == b"x"


async def test_receive_some_bad_max_bytes(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    await handshake_both(client, server)
    with pytest.raises(ValueError, match=r"^max_bytes must be >= 1$"):
        await client.receive_some(0)
    with pytest.raises(TypeError):
        await client.receive_some(1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# the conformance suite over TLS


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_ssl_stream_passes_check_two_way_stream(
    client_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    async def stream_maker() -> tuple[SSLStream[MemoryStapled], SSLStream[MemoryStapled]]:
        kwargs = {"https_compatible": https_compatible}
        return ssl_memory_pair(client_ctx, client_kwargs=kwargs, server_kwargs=kwargs)

    async def clogged_stream_maker() -> tuple[
        SSLStream[LockstepStapled], SSLStream[LockstepStapled]
    ]:
        client, server = ssl_lockstep_pair(client_ctx)
        # Handshake up front: otherwise the suite's "receive_some unclogs a
        # blocked wait_send_all_might_not_block" step would have the
        # receiver start the handshake by *sending*, and block there.
        await handshake_both(client, server)
        return client, server

    await check_two_way_stream(stream_maker, clogged_stream_maker)


# --------------------------------------------------------------------------
# unwrap and closing


async def test_unwrap_returns_transport_and_trailing_bytes(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    client_transport = client.transport_stream
    server_transport = server.transport_stream
    seq = Sequencer()

    async def client_side() -> None:
        await client.do_handshake()
        await client.send_all(b"x")
        assert await client.receive_some(1) == b"y"
        await client.send_all(b"z")
        # Hold back what we send from now on, so the server sees our
        # close_notify reply and the cleartext after it in one lump.
        async with seq(0):
            pump = client_transport.send_stream.send_all_hook
            client_transport.send_stream.send_all_hook = None
        assert await client.receive_some(1) == b""
        assert client.transport_stream is client_transport
        raw, trailing = await client.unwrap()
        assert raw is client_transport
        assert trailing == b""
        assert client.transport_stream is None
        await raw.send_all(b"trailing")
        client_transport.send_stream.send_all_hook = pump
        assert pump is not None
        await pump()

    async def server_side() -> None:
        await server.do_handshake()
        assert await server.receive_some(1) == b"x"
        await server.send_all(b"y")
        assert await server.receive_some(1) == b"z"
        async with seq(1):
            raw, trailing = await server.unwrap()
        assert raw is server_transport
        assert trailing == b"trailing"
        assert server.transport_stream is None

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client_side)
        nursery.start_soon(server_side)

    # After unwrap the SSLStream is closed.
    with pytest.raises(ClosedResourceError):
        await client.send_all(b"x")
    with assert_checkpoints():
        await client.aclose()


async def test_graceful_close(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    client_transport = client.transport_stream

    async def client_closer() -> None:
        with assert_checkpoints():
            await client.aclose()

    async def server_closer() -> None:
        assert await server.receive_some(10) == b""
        assert await server.receive_some(10) == b""
        with assert_checkpoints():
            await server.aclose()

    # aclose handshakes first (close_notify must be signed), so both sides
    # have to run at once.
    async with corral.open_nursery() as nursery:
        nursery.start_soon(client_closer)
        nursery.start_soon(server_closer)

    with pytest.raises(ClosedResourceError):
        await client_transport.send_all(b"123")
    with assert_checkpoints():
        await client.aclose()
    with assert_checkpoints():
        await client.aclose()
    with pytest.raises(ClosedResourceError):
        await server.send_all(b"123")
    with pytest.raises(ClosedResourceError):
        await client.receive_some(10)
    with pytest.raises(ClosedResourceError):
        await client.unwrap()
    with pytest.raises(ClosedResourceError):
        await client.do_handshake()
    with pytest.raises(ClosedResourceError):
        await client.wait_send_all_might_not_block()


async def test_send_all_failing_midway_breaks_the_stream(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)
    await handshake_both(client, server)

    async def bad_hook() -> NoReturn:
        raise KeyError

    client.transport_stream.send_stream.send_all_hook = bad_hook
    with pytest.raises(KeyError):
        await client.send_all(b"x")
    with pytest.raises(BrokenResourceError):
        await client.wait_send_all_might_not_block()
    with pytest.raises(BrokenResourceError):
        await client.send_all(b"x")

    closed = 0

    def count_close() -> None:
        nonlocal closed
        closed += 1

    client.transport_stream.send_stream.close_hook = count_close
    client.transport_stream.receive_stream.close_hook = count_close
    await client.aclose()
    assert closed == 2


async def test_cancelled_send_breaks_the_stream(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_lockstep_pair(client_ctx)
    await handshake_both(client, server)
    # Nobody reads on the lockstep transport: send_all blocks with its
    # record half delivered; cancel it there.

    async def cancel_when_blocked(scope: corral.CancelScope) -> None:
        await wait_all_tasks_blocked()
        scope.cancel()

    with corral.CancelScope() as scope:
        async with corral.open_nursery() as nursery:
            nursery.start_soon(cancel_when_blocked, scope)
            await client.send_all(b"x" * 100)
    assert scope.cancelled_caught
    with pytest.raises(BrokenResourceError):
        await client.send_all(b"more")
    await client.aclose()
    with pytest.raises(ClosedResourceError):
        await client.send_all(b"more")


async def test_tls_inside_tls(client_ctx: ssl.SSLContext) -> None:
    outer_client, outer_server = ssl_memory_pair(client_ctx)
    inner_client, inner_server = wrap_pair(client_ctx, outer_client, outer_server)

    async def client_side() -> None:
        await inner_client.send_all(b"hi")
        assert await inner_client.receive_some(10) == b"bye"

    async def server_side() -> None:
        assert await inner_server.receive_some(10) == b"hi"
        await inner_server.send_all(b"bye")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client_side)
        nursery.start_soon(server_side)


async def test_truncation_is_an_error_unless_https_compatible(
    client_ctx: ssl.SSLContext,
) -> None:
    client, server = ssl_memory_pair(client_ctx)
    await handshake_both(client, server)
    await corral.aclose_forcefully(client)  # no close_notify
    with pytest.raises(BrokenResourceError):
        await server.receive_some(10)
    with pytest.raises(BrokenResourceError):
        await server.send_all(b"x" * 10)
    await server.aclose()

    kwargs = {"https_compatible": True}
    client, server = ssl_memory_pair(client_ctx, client_kwargs=kwargs, server_kwargs=kwargs)
    await handshake_both(client, server)
    await corral.aclose_forcefully(client)
    assert await server.receive_some(10) == b""
    # A clean EOF, but the session is over.
    with pytest.raises(BrokenResourceError):
        await server.send_all(b"x" * 10)
    await server.aclose()


async def test_https_compatible_sends_no_close_notify(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(
        client_ctx,
        client_kwargs={"https_compatible": True},
        server_kwargs={"https_compatible": False},
    )
    await handshake_both(client, server)

    async def strict_receiver() -> None:
        with pytest.raises(BrokenResourceError) as excinfo:
            await server.receive_some(10)
        assert isinstance(excinfo.value.__cause__, ssl.SSLError)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client.aclose)
        nursery.start_soon(strict_receiver)


async def test_https_compatible_eof_before_handshake(client_ctx: ssl.SSLContext) -> None:
    kwargs = {"https_compatible": True}
    client, server = ssl_memory_pair(client_ctx, client_kwargs=kwargs, server_kwargs=kwargs)

    async def server_side() -> None:
        assert await server.receive_some(10) == b""

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client.aclose)
        nursery.start_soon(server_side)


async def test_close_before_handshake_is_clean_eof(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)

    async def server_side() -> None:
        with assert_checkpoints():
            assert await server.receive_some(10) == b""
        with assert_checkpoints():
            await server.aclose()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client.aclose)
        nursery.start_soon(server_side)


async def test_handshake_failure_during_aclose_is_raised(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = memory_stream_pair()
    client = SSLStream(
        client_transport, ssl.create_default_context(), server_hostname=HOSTNAME
    )
    server = SSLStream(server_transport, SERVER_CTX, server_side=True)
    closed = 0
    pump_eof = client_transport.send_stream.close_hook
    assert pump_eof is not None

    def count_close() -> None:
        nonlocal closed
        closed += 1
        assert pump_eof is not None
        pump_eof()

    client_transport.send_stream.close_hook = count_close

    async def server_side() -> None:
        with pytest.raises(BrokenResourceError):
            await server.do_handshake()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(server_side)
        with pytest.raises(BrokenResourceError):
            await client.aclose()
    assert closed == 1
    with pytest.raises(ClosedResourceError):
        await client.send_all(b"x")


async def test_transport_closed_only_once_even_if_its_close_fails(
    client_ctx: ssl.SSLContext,
) -> None:
    client, server = ssl_memory_pair(client_ctx)
    await handshake_both(client, server)
    original = client.transport_stream.send_stream.close_hook
    assert original is not None
    calls = 0

    def failing_close() -> NoReturn:
        nonlocal calls
        assert original is not None
        original()
        calls += 1
        raise KeyError

    client.transport_stream.send_stream.close_hook = failing_close
    with pytest.raises(KeyError):
        await client.aclose()
    assert calls == 1


async def test_send_error_during_handshake(client_ctx: ssl.SSLContext) -> None:
    client, _server = ssl_memory_pair(client_ctx)

    async def bad_hook() -> NoReturn:
        raise KeyError

    client.transport_stream.send_stream.send_all_hook = bad_hook
    with pytest.raises(KeyError):
        with assert_checkpoints():
            await client.do_handshake()
    with pytest.raises(BrokenResourceError):
        await client.do_handshake()


async def test_receive_error_during_handshake(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_memory_pair(client_ctx)

    async def bad_hook() -> NoReturn:
        raise KeyError

    client.transport_stream.receive_stream.receive_some_hook = bad_hook

    async def client_side(scope: corral.CancelScope) -> None:
        with pytest.raises(KeyError):
            with assert_checkpoints():
                await client.do_handshake()
        scope.cancel()

    async with corral.open_nursery() as nursery:
        nursery.start_soon(client_side, nursery.cancel_scope)
        nursery.start_soon(server.do_handshake)
    with pytest.raises(BrokenResourceError):
        await client.do_handshake()


async def test_waiters_on_a_failed_handshake_do_not_hang(client_ctx: ssl.SSLContext) -> None:
    # corral-specific: a task waiting for another task's handshake learns
    # that it failed (Trio leaves it waiting).
    client, _server = ssl_memory_pair(client_ctx)

    async def bad_hook() -> NoReturn:
        await wait_all_tasks_blocked()
        raise KeyError

    client.transport_stream.send_stream.send_all_hook = bad_hook
    results: list[type[BaseException]] = []

    async def attempt(afn: Callable[[], Awaitable[object]]) -> None:
        try:
            await afn()
        except (KeyError, BrokenResourceError) as exc:
            results.append(type(exc))

    async with corral.open_nursery() as nursery:
        nursery.start_soon(attempt, client.do_handshake)
        await wait_all_tasks_blocked()
        nursery.start_soon(attempt, client.do_handshake)
        nursery.start_soon(attempt, client.receive_some)
    assert sorted(r.__name__ for r in results) == [
        "BrokenResourceError",
        "BrokenResourceError",
        "KeyError",
    ]


# --------------------------------------------------------------------------
# SSLListener


@attrs.define(eq=False, slots=False)
class MemoryListener(Listener[StapledStream[MemorySendStream, MemoryReceiveStream]]):
    pending: list[MemoryStapled] = attrs.Factory(list)
    closed: bool = False

    async def accept(self) -> MemoryStapled:
        await corral.lowlevel.checkpoint()
        return self.pending.pop(0)

    async def aclose(self) -> None:
        self.closed = True
        await corral.lowlevel.checkpoint()


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_ssl_listener(client_ctx: ssl.SSLContext, https_compatible: bool) -> None:
    transport_listener = MemoryListener()
    listener = SSLListener(transport_listener, SERVER_CTX, https_compatible=https_compatible)
    assert listener.transport_listener is transport_listener
    client_transport, server_transport = memory_stream_pair()
    transport_listener.pending.append(server_transport)

    server = await listener.accept()
    assert isinstance(server, SSLStream)
    assert server.server_side
    assert server.transport_stream is server_transport
    assert server.context is SERVER_CTX
    assert server._https_compatible is https_compatible

    client = SSLStream(client_transport, client_ctx, server_hostname=HOSTNAME)
    async with corral.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"over the listener")
        assert await server.receive_some() == b"over the listener"

    await listener.aclose()
    assert transport_listener.closed


# --------------------------------------------------------------------------
# Renegotiation-style flows, with a scripted SSLObject.
#
# Python's ssl cannot start a renegotiation and TLS 1.3 has none, so real
# certificates cannot produce "write needs to receive" or "read needs to
# send". These tests replace the SSLObject with a script that does, to
# exercise _retry's sharing of the transport between tasks.


class ScriptedSSLObject:
    """Plaintext passthrough with two renegotiation-like quirks:

    - while ``write_needs`` is set, write() first needs that token from the
      peer (SSLWantReadError until it arrives);
    - a read() that finds b"HELLO?" in the incoming data answers b"HELLO!"
      (handshake output from a read) and then wants more data.
    """

    server_side = False

    def __init__(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self._in = incoming
        self._out = outgoing
        self._buffer = bytearray()
        self.write_needs: bytes | None = None

    def version(self) -> str:
        return "scripted"

    def do_handshake(self) -> None:
        return None

    def _fill(self) -> None:
        self._buffer += self._in.read()

    def write(self, data: bytes) -> int:
        if self.write_needs is not None:
            self._fill()
            if not self._buffer.startswith(self.write_needs):
                raise ssl.SSLWantReadError
            del self._buffer[: len(self.write_needs)]
            self.write_needs = None
        self._out.write(bytes(data))
        return len(data)

    def read(self, max_bytes: int) -> bytes:
        self._fill()
        if self._buffer.startswith(b"HELLO?"):
            del self._buffer[:6]
            self._out.write(b"HELLO!")
            raise ssl.SSLWantReadError
        if not self._buffer:
            if self._in.eof:
                return b""
            raise ssl.SSLWantReadError
        chunk = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return chunk


def scripted_pair() -> tuple[SSLStream[MemoryStapled], MemoryStapled, ScriptedSSLObject]:
    ours, peer = memory_stream_pair()
    s = SSLStream(ours, ssl.create_default_context(), server_hostname="x")
    script = ScriptedSSLObject(s._incoming, s._outgoing)
    s._ssl_object = script  # type: ignore[assignment]
    return s, peer, script


async def test_write_that_needs_to_receive_shares_the_receive() -> None:
    s, peer, script = scripted_pair()
    await s.do_handshake()
    script.write_needs = b"GO"
    got: list[bytes | bytearray] = []

    async def reader() -> None:
        got.append(await s.receive_some())

    async with corral.open_nursery() as nursery:
        nursery.start_soon(s.send_all, b"payload")
        await wait_all_tasks_blocked()
        nursery.start_soon(reader)
        await wait_all_tasks_blocked()
        # One transport receive brings both the token the writer needs and
        # the data the reader wants. The reader must not receive again
        # (nothing more is coming).
        await peer.send_all(b"GOdata")
    assert await peer.receive_some() == b"payload"
    assert got == [b"data"]


async def test_read_that_needs_to_send_sends_first() -> None:
    s, peer, _script = scripted_pair()
    await s.do_handshake()

    async def peer_side() -> None:
        await peer.send_all(b"HELLO?")
        assert await peer.receive_some() == b"HELLO!"
        await peer.send_all(b"after")

    async with corral.open_nursery() as nursery:
        nursery.start_soon(peer_side)
        assert await s.receive_some() == b"after"


async def test_concurrent_writers_keep_wire_order() -> None:
    # The transport send lock is FIFO: handshake output from a read and
    # data from a write reach the wire in the order they left the SSLObject.
    s, peer, _script = scripted_pair()
    await s.do_handshake()
    stall = corral.Event()
    pump = s.transport_stream.send_stream.send_all_hook

    async def slow_pump() -> None:
        await stall.wait()
        assert pump is not None
        await pump()

    s.transport_stream.send_stream.send_all_hook = slow_pump

    async def read_once() -> None:
        await s.receive_some()

    async with corral.open_nursery() as nursery:
        await peer.send_all(b"HELLO?")
        nursery.start_soon(read_once)  # queues b"HELLO!" on the wire
        await wait_all_tasks_blocked()
        nursery.start_soon(s.send_all, b"data")  # queues behind it
        await wait_all_tasks_blocked()
        stall.set()
        await wait_all_tasks_blocked()
        await peer.send_all(b"x")
    wire = bytearray()
    while len(wire) < len(b"HELLO!data"):
        wire += await peer.receive_some()
    assert wire == b"HELLO!data"
