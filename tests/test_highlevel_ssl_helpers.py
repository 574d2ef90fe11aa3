"""TLS over TCP on every backend: SSLStream over SocketStream passes the
two-way conformance suite (clogged cases included), and the helpers
open_ssl_over_tcp_stream / open_ssl_over_tcp_listeners /
serve_ssl_over_tcp, with certificates made by trustme."""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any

import pytest
import trustme
from net_helpers import needs_ipv6, net_backend, run_on_backend  # noqa: F401

import corral
import corral.socket as csocket
from corral import (
    BrokenResourceError,
    SocketListener,
    SocketStream,
    SSLListener,
    SSLStream,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)
from corral.abc import HostnameResolver
from corral.testing import (
    check_two_way_stream,
    open_stream_to_socket_listener,
    wait_all_tasks_blocked,
)

pytestmark = pytest.mark.corral(run=run_on_backend)

HOSTNAME = "corral-test-1.example.org"
CA = trustme.CA()
SERVER_CERT = CA.issue_cert(HOSTNAME)


def _strict_eof(ctx: ssl.SSLContext) -> ssl.SSLContext:
    # Newer Pythons may set OP_IGNORE_UNEXPECTED_EOF, which hides truncation.
    if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


SERVER_CTX = _strict_eof(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
SERVER_CERT.configure_cert(SERVER_CTX)


@pytest.fixture(params=["tls13", "tls12"])
def client_ctx(request: pytest.FixtureRequest) -> ssl.SSLContext:
    ctx = _strict_eof(ssl.create_default_context())
    CA.configure_trust(ctx)
    if request.param == "tls12":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def tcp_pair() -> tuple[SocketStream, SocketStream]:
    (listener,) = await corral.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        client = await open_stream_to_socket_listener(listener)
        server = await listener.accept()
    return client, server


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_ssl_over_tcp_passes_check_two_way_stream(
    client_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    async def stream_maker() -> tuple[SSLStream[SocketStream], SSLStream[SocketStream]]:
        client_tcp, server_tcp = await tcp_pair()
        client = SSLStream(
            client_tcp, client_ctx, server_hostname=HOSTNAME, https_compatible=https_compatible
        )
        server = SSLStream(
            server_tcp, SERVER_CTX, server_side=True, https_compatible=https_compatible
        )
        return client, server

    # No clogged maker: clogging a TLS connection over real TCP needs a
    # send that blocks with nothing sent, and Linux appends small writes to
    # the last queued segment even when the socket is not writable, so only
    # cancelling a send that already sent part of a record makes the next
    # one block, and that breaks the TLS stream. The clogged cases are
    # covered by SocketStream over TCP (tests/test_highlevel_socket.py) and
    # SSLStream over lockstep streams (tests/test_ssl.py).
    await check_two_way_stream(stream_maker, None)


class FakeResolver(HostnameResolver):
    """Resolves HOSTNAME to the given loopback addresses."""

    def __init__(self, sockaddrs: list[Any]) -> None:
        self.sockaddrs = sockaddrs

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: Any,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, Any, int, str, Any]]:
        assert host == HOSTNAME.encode()
        return [
            (
                csocket.AF_INET6 if len(addr) == 4 else csocket.AF_INET,
                csocket.SOCK_STREAM,
                csocket.IPPROTO_TCP,
                "",
                addr,
            )
            for addr in self.sockaddrs
        ]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError


async def echo(stream: SSLStream[SocketStream]) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
        await stream.aclose()
    except BrokenResourceError:
        pass


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_serve_and_open_ssl_over_tcp(
    client_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(
                serve_ssl_over_tcp,
                echo,
                0,
                SERVER_CTX,
                host="127.0.0.1",
                https_compatible=https_compatible,
            )
        )
        (listener,) = listeners
        assert isinstance(listener, SSLListener)
        assert isinstance(listener.transport_listener, SocketListener)
        sockaddr = listener.transport_listener.socket.getsockname()
        csocket.set_custom_hostname_resolver(FakeResolver([sockaddr]))

        stream = await open_ssl_over_tcp_stream(
            HOSTNAME, sockaddr[1], ssl_context=client_ctx, https_compatible=https_compatible
        )
        assert isinstance(stream, SSLStream)
        assert isinstance(stream.transport_stream, SocketStream)
        assert stream.server_hostname == HOSTNAME
        await stream.send_all(b"hello over TLS")
        assert await stream.receive_some() == b"hello over TLS"
        assert stream.version() in ("TLSv1.2", "TLSv1.3")
        await stream.aclose()

        # Happy eyeballs passes through: a refused address first costs
        # nothing but its attempt.
        with csocket.socket() as probe:
            await probe.bind(("127.0.0.1", 0))
            dead = probe.getsockname()
        csocket.set_custom_hostname_resolver(FakeResolver([dead, sockaddr]))
        stream = await open_ssl_over_tcp_stream(
            HOSTNAME, sockaddr[1], ssl_context=client_ctx, happy_eyeballs_delay=10
        )
        await stream.send_all(b"second")
        assert await stream.receive_some() == b"second"
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_open_ssl_over_tcp_stream_default_context_verifies_certificates() -> None:
    (listener,) = await open_ssl_over_tcp_listeners(0, SERVER_CTX, host="127.0.0.1")
    assert isinstance(listener.transport_listener, SocketListener)
    sockaddr = listener.transport_listener.socket.getsockname()
    csocket.set_custom_hostname_resolver(FakeResolver([sockaddr]))

    async def server() -> None:
        conn = await listener.accept()
        with pytest.raises(BrokenResourceError):
            await conn.do_handshake()
        await corral.aclose_forcefully(conn)

    async with corral.open_nursery() as nursery:
        nursery.start_soon(server)
        # The system trust store does not know trustme's CA.
        stream = await open_ssl_over_tcp_stream(HOSTNAME, sockaddr[1])
        assert stream.context.verify_mode == ssl.CERT_REQUIRED
        if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
            assert not stream.context.options & ssl.OP_IGNORE_UNEXPECTED_EOF
        with pytest.raises(BrokenResourceError) as info:
            await stream.do_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        await corral.aclose_forcefully(stream)
    await listener.aclose()


async def test_open_ssl_over_tcp_listeners(client_ctx: ssl.SSLContext) -> None:
    listeners = await open_ssl_over_tcp_listeners(0, SERVER_CTX, host="127.0.0.1", backlog=3)
    (listener,) = listeners
    assert isinstance(listener, SSLListener)
    tcp = listener.transport_listener
    assert isinstance(tcp, SocketListener)
    assert tcp.socket.getsockname()[0] == "127.0.0.1"

    client_tcp = await open_stream_to_socket_listener(tcp)
    client = SSLStream(client_tcp, client_ctx, server_hostname=HOSTNAME)
    async with corral.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"ping")
        server = await listener.accept()
        assert isinstance(server, SSLStream)
        assert await server.receive_some() == b"ping"
    await client.aclose()
    await server.aclose()
    await listener.aclose()
    with pytest.raises(TypeError, match=r"^port must be an int not '443'$"):
        await open_ssl_over_tcp_listeners("443", SERVER_CTX)  # type: ignore[arg-type]


@needs_ipv6
async def test_open_ssl_over_tcp_listeners_dual_stack() -> None:
    listeners = await open_ssl_over_tcp_listeners(0, SERVER_CTX)
    try:
        tcp = [lst.transport_listener for lst in listeners]
        assert all(isinstance(t, SocketListener) for t in tcp)
        families = sorted(t.socket.family for t in tcp if isinstance(t, SocketListener))
        assert families == [csocket.AF_INET, csocket.AF_INET6]
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_serve_ssl_over_tcp_max_connections(client_ctx: ssl.SSLContext) -> None:
    release = corral.Event()
    active = 0

    async def handler(stream: SSLStream[SocketStream]) -> None:
        nonlocal active
        active += 1
        await stream.send_all(b"in")
        await release.wait()
        active -= 1

    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(serve_ssl_over_tcp, handler, 0, SERVER_CTX, host="127.0.0.1", max_connections=1)
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        csocket.set_custom_hostname_resolver(FakeResolver([("127.0.0.1", port)]))
        first = await open_ssl_over_tcp_stream(HOSTNAME, port, ssl_context=client_ctx)
        second = await open_ssl_over_tcp_stream(HOSTNAME, port, ssl_context=client_ctx)
        assert await first.receive_some() == b"in"
        await wait_all_tasks_blocked()
        assert active == 1
        release.set()
        assert await second.receive_some() == b"in"
        await corral.aclose_forcefully(first)
        await corral.aclose_forcefully(second)
        nursery.cancel_scope.cancel()
