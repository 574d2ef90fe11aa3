"""corral.socket's name resolution: getaddrinfo/getnameinfo, the custom
resolver and socket factory hooks, and address resolution in bind/connect."""

from __future__ import annotations

import socket as stdlib_socket
from typing import Any

import pytest
from test_socket import BACKENDS, have_ipv6, on

import corral
import corral.socket as csocket
from corral import testing


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_getaddrinfo_numeric_needs_no_thread(backend: str) -> None:
    async def main() -> None:
        with testing.assert_checkpoints():
            res = await csocket.getaddrinfo("127.0.0.1", 80, type=stdlib_socket.SOCK_STREAM)
        assert res[0][4] == ("127.0.0.1", 80)
        assert testing.active_thread_count() == 0
        with pytest.raises(stdlib_socket.gaierror):
            await csocket.getaddrinfo(
                "127.0.0.1", 80, family=stdlib_socket.AF_INET6, flags=stdlib_socket.AI_NUMERICHOST
            )

    on(backend, main)


class RecordingResolver(corral.abc.HostnameResolver):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.results: list[Any] | None = None

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        self.calls.append(("getaddrinfo", host, port, family, type, proto, flags))
        if self.results is not None:
            return self.results
        return [(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        self.calls.append(("getnameinfo", sockaddr, flags))
        return ("resolved.example", "http")


def test_custom_hostname_resolver(backend: str) -> None:
    async def main() -> None:
        resolver = RecordingResolver()
        assert csocket.set_custom_hostname_resolver(resolver) is None
        # Non-ASCII names arrive IDNA-2008 encoded; numeric ones never arrive.
        res = await csocket.getaddrinfo("Straße.example", 80)
        assert res[0][4] == ("127.0.0.1", 80)
        await csocket.getaddrinfo("127.0.0.1", 80)
        assert await csocket.getnameinfo(("127.0.0.1", 80), 0) == ("resolved.example", "http")
        assert resolver.calls == [
            ("getaddrinfo", b"xn--strae-oqa.example", 80, 0, 0, 0, 0),
            ("getnameinfo", ("127.0.0.1", 80), 0),
        ]
        assert corral.lowlevel.encode_hostname("Straße.example") == b"xn--strae-oqa.example"
        # bind/connect resolve names through the same hook.
        resolver.calls.clear()
        with csocket.socket() as sock:
            await sock.bind(("my-host", 0))
            assert sock.getsockname()[0] == "127.0.0.1"
        assert resolver.calls[0][1:3] == (b"my-host", 0)
        assert resolver.calls[0][6] & stdlib_socket.AI_PASSIVE
        assert csocket.set_custom_hostname_resolver(None) is resolver

    on(backend, main)


def test_system_resolver_runs_in_a_thread(backend: str) -> None:
    async def main() -> None:
        res = await csocket.getaddrinfo("localhost", "80", type=stdlib_socket.SOCK_STREAM)
        assert any(entry[4][1] == 80 for entry in res)
        host, _ = await csocket.getnameinfo(("127.0.0.1", 80), stdlib_socket.NI_NUMERICHOST)
        assert host == "127.0.0.1"
        assert await csocket.getprotobyname("tcp") == 6

    on(backend, main)


def test_custom_socket_factory(backend: str) -> None:
    async def main() -> None:
        made: list[tuple[int, int, int]] = []

        class Factory(corral.abc.SocketFactory):
            def socket(self, family: Any = 0, type: Any = 0, proto: int = 0) -> Any:
                made.append((family, type, proto))
                return "a fake socket"

        assert csocket.set_custom_socket_factory(Factory()) is None
        assert csocket.socket(stdlib_socket.AF_INET6, stdlib_socket.SOCK_DGRAM) == "a fake socket"
        assert made == [(stdlib_socket.AF_INET6, stdlib_socket.SOCK_DGRAM, 0)]
        # An explicit fileno bypasses the factory.
        raw = stdlib_socket.socket()
        with csocket.socket(fileno=raw.detach()) as real:
            assert isinstance(real, csocket.SocketType)
        csocket.set_custom_socket_factory(None)

    on(backend, main)


def test_bind_resolution_special_hosts(backend: str) -> None:
    async def main() -> None:
        with csocket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_DGRAM) as sock:
            await sock.bind(("", 0))  # "" means any
            assert sock.getsockname()[0] == "0.0.0.0"
        if have_ipv6:
            with csocket.socket(stdlib_socket.AF_INET6) as sock:
                sock.setsockopt(stdlib_socket.IPPROTO_IPV6, stdlib_socket.IPV6_V6ONLY, 0)
                # A v4 name on a dual-stack socket maps to ::ffff:...
                await sock.bind(("localhost", 0))
                assert sock.getsockname()[0] in ("::1", "::ffff:127.0.0.1")

    on(backend, main)


def test_cancelled_resolution_in_connect_closes_the_socket(backend: str) -> None:
    async def main() -> None:
        class Slow(RecordingResolver):
            async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
                await corral.sleep_forever()

        csocket.set_custom_hostname_resolver(Slow())
        with corral.move_on_after(0.01):
            with csocket.socket() as sock:
                await sock.connect(("unresolvable.example", 80))
        assert sock.fileno() == -1

    on(backend, main)


def test_resolve_address_rules(backend: str) -> None:
    from corral._socket_resolve import resolve_address

    inet, inet6 = stdlib_socket.AF_INET, stdlib_socket.AF_INET6
    stream = stdlib_socket.SOCK_STREAM

    async def main() -> None:
        resolver = RecordingResolver()
        csocket.set_custom_hostname_resolver(resolver)
        # Numeric addresses pass through untouched, without a checkpoint.
        with testing.assert_no_checkpoints():
            assert await resolve_address(stream, inet, 0, ("1.2.3.4", 80), local=False) == (
                "1.2.3.4",
                80,
            )
            assert await resolve_address(stream, inet6, 0, ("::1", 80, 7, 3), local=False) == (
                "::1",
                80,
                7,
                3,
            )
        # "" is "any", "<broadcast>" the broadcast address: numeric, no resolver.
        assert (await resolve_address(stream, inet, 0, ("", 80), local=True))[0] == "0.0.0.0"
        assert (await resolve_address(stream, inet, 0, ("<broadcast>", 80), local=False))[
            0
        ] == "255.255.255.255"
        # An IPv4 literal on a dual-stack IPv6 socket becomes v4-mapped.
        assert (await resolve_address(stream, inet6, 0, ("127.0.0.1", 80), local=False, v6only=0))[
            0
        ] == "::ffff:127.0.0.1"
        assert resolver.calls == []
        # Names go to the resolver; AI_V4MAPPED unless the socket is v6-only,
        # and the caller's flowinfo and scope id are kept.
        resolver.results = [
            (inet6, stream, 6, "", ("::1", 80, 0, 0)),
        ]
        assert await resolve_address(
            stream, inet6, 0, ("name", 80, 5, 6), local=False, v6only=lambda: 0
        ) == ("::1", 80, 5, 6)
        assert resolver.calls[-1][6] == stdlib_socket.AI_V4MAPPED
        await resolve_address(stream, inet6, 0, ("name", 80), local=True, v6only=1)
        assert resolver.calls[-1][6] == stdlib_socket.AI_PASSIVE
        if not hasattr(stdlib_socket, "AF_UNIX"):
            return  # Windows CPython has neither AF_UNIX nor AF_PACKET
        # Unix paths: path-likes become str; other types are refused.
        import pathlib

        assert (
            await resolve_address(
                stream, stdlib_socket.AF_UNIX, 0, pathlib.Path("/x/y"), local=False
            )
            == "/x/y"
        )
        with pytest.raises(TypeError, match=r"^AF_UNIX address must be a str, bytes or path"):
            await resolve_address(stream, stdlib_socket.AF_UNIX, 0, 5, local=False)
        # Other families: unchanged.
        assert await resolve_address(stream, stdlib_socket.AF_PACKET, 0, ("lo", 0), local=True) == (
            "lo",
            0,
        )

    on(backend, main)
