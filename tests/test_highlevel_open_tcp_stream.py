"""open_tcp_stream on every backend: real connections (local_address
included), and the happy-eyeballs schedule checked with a fake resolver and
a fake socket factory under an autojumping mock clock (Trio's strategy):
each fake connect takes a scripted time and succeeds or fails."""

from __future__ import annotations

import re
import socket as stdlib_socket
from typing import Any

import pytest
from net_helpers import needs_ipv6, net_backend, run_on_backend  # noqa: F401

import corral
import corral.socket as csocket
from corral import SocketStream, open_tcp_stream
from corral._highlevel_open_tcp_stream import (
    format_host_port,
    reorder_for_rfc_6555_section_5_4,
)
from corral.abc import HostnameResolver, SocketFactory
from corral.testing import MockClock

pytestmark = pytest.mark.corral(run=run_on_backend)

AF_INET = stdlib_socket.AF_INET
AF_INET6 = stdlib_socket.AF_INET6


# -- helpers ------------------------------------------------------------------------


def test_reorder_for_rfc_6555_section_5_4() -> None:
    def v4(i: int) -> tuple[Any, ...]:
        return (AF_INET, 0, 0, "", (f"10.0.0.{i}", 80))

    def v6(i: int) -> tuple[Any, ...]:
        return (AF_INET6, 0, 0, "", (f"::{i}", 80))

    for targets in ([], [v4(0)], [v4(0), v4(1)], [v4(0), v6(0), v4(1)], [v6(0), v4(0)]):
        original = list(targets)
        reorder_for_rfc_6555_section_5_4(targets)
        assert targets == original
    targets = [v4(0), v4(1), v4(2), v6(0), v6(1)]
    reorder_for_rfc_6555_section_5_4(targets)
    assert targets == [v4(0), v6(0), v4(1), v4(2), v6(1)]
    targets = [v6(0), v6(1), v4(0)]
    reorder_for_rfc_6555_section_5_4(targets)
    assert targets == [v6(0), v4(0), v6(1)]


def test_format_host_port() -> None:
    assert format_host_port("127.0.0.1", 80) == "127.0.0.1:80"
    assert format_host_port(b"127.0.0.1", 80) == "127.0.0.1:80"
    assert format_host_port("example.com", 443) == "example.com:443"
    assert format_host_port(b"example.com", 443) == "example.com:443"
    assert format_host_port("::1", "http") == "[::1]:http"
    assert format_host_port(b"::1", 8080) == "[::1]:8080"


# -- real sockets ----------------------------------------------------------------------


async def test_open_tcp_stream_connects() -> None:
    with csocket.socket() as listen_sock:
        await listen_sock.bind(("127.0.0.1", 0))
        listen_sock.listen(1)
        for host in ("127.0.0.1", b"127.0.0.1", "localhost"):
            client = await open_tcp_stream(host, listen_sock.getsockname()[1])
            assert isinstance(client, SocketStream)
            server_sock, _ = await listen_sock.accept()
            await client.send_all(b"x")
            assert await server_sock.recv(1) == b"x"
            # open_tcp_stream's stream has SocketStream's defaults.
            assert client.getsockopt(csocket.IPPROTO_TCP, csocket.TCP_NODELAY)
            await client.aclose()
            server_sock.close()


@needs_ipv6
async def test_open_tcp_stream_ipv6() -> None:
    with csocket.socket(AF_INET6) as listen_sock:
        await listen_sock.bind(("::1", 0))
        listen_sock.listen(1)
        async with await open_tcp_stream("::1", listen_sock.getsockname()[1]) as client:
            assert client.socket.family == AF_INET6
            server_sock, _ = await listen_sock.accept()
            server_sock.close()


async def test_open_tcp_stream_input_validation() -> None:
    for host in (None, 127, ("127.0.0.1", 80)):
        with pytest.raises(
            ValueError, match=rf"^host must be str or bytes, not {re.escape(repr(host))}$"
        ):
            await open_tcp_stream(host, 80)  # type: ignore[arg-type]
    for port in (b"80", "80", None, 80.0):
        with pytest.raises(TypeError, match=rf"^port must be int, not {re.escape(repr(port))}$"):
            await open_tcp_stream("127.0.0.1", port)  # type: ignore[arg-type]


async def test_open_tcp_stream_refused_reports_every_attempt() -> None:
    # A port nobody listens on: bind one, and close it without listening.
    with csocket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        OSError, match=rf"^all attempts to connect to 127\.0\.0\.1:{port} failed$"
    ) as info:
        await open_tcp_stream("127.0.0.1", port)
    group = info.value.__cause__
    assert isinstance(group, ExceptionGroup)
    (refused,) = group.exceptions
    assert isinstance(refused, ConnectionRefusedError)


def can_bind_127_0_0_2() -> bool:
    with stdlib_socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:  # pragma: no cover - not Linux
            return False
        return bool(s.getsockname()[0] == "127.0.0.2")


async def test_local_address_real() -> None:
    with csocket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        # Linux routes all of 127/8 through loopback, so 127.0.0.2 is a
        # second local address to choose.
        local_address = "127.0.0.2" if can_bind_127_0_0_2() else "127.0.0.1"
        async with await open_tcp_stream(
            *listener.getsockname(), local_address=local_address
        ) as client:
            assert client.socket.getsockname()[0] == local_address
            if hasattr(csocket, "IP_BIND_ADDRESS_NO_PORT"):  # Linux's
                assert client.socket.getsockopt(csocket.IPPROTO_IP, csocket.IP_BIND_ADDRESS_NO_PORT)
            server_sock, remote = await listener.accept()
            assert remote[0] == local_address
            server_sock.close()

        # An IPv6 local address cannot reach an IPv4 peer.
        with pytest.raises(
            OSError, match=r"^all attempts to connect to 127\.0\.0\.1:\d+ failed$"
        ) as info:
            await open_tcp_stream(*listener.getsockname(), local_address="::")
        assert isinstance(info.value.__cause__, ExceptionGroup)
        (bind_error,) = info.value.__cause__.exceptions
        assert str(bind_error) == (
            f"local_address='::' is incompatible with remote address {listener.getsockname()!r}"
        )

        # The IPv4 wildcard works: only the family is chosen.
        async with await open_tcp_stream(
            *listener.getsockname(), local_address="0.0.0.0"
        ) as client:
            server_sock, remote = await listener.accept()
            assert remote == client.socket.getsockname()
            server_sock.close()


# -- happy eyeballs with fakes ----------------------------------------------------------


class FakeSocket(csocket.SocketType):
    def __init__(self, scenario: Scenario, family: int, type_: int, proto: int) -> None:
        self.scenario = scenario
        self._family = stdlib_socket.AddressFamily(family)
        self._type = stdlib_socket.SocketKind(type_)
        self._proto = proto
        self.ip: str | None = None
        self.port: int | None = None
        self.succeeded = False
        self.closed = False
        self.failing = False
        self.bound: Any = None
        self.options: dict[tuple[int, int], Any] = {}

    @property
    def type(self) -> stdlib_socket.SocketKind:
        return self._type

    @property
    def family(self) -> stdlib_socket.AddressFamily:
        return self._family

    @property
    def proto(self) -> int:
        return self._proto

    async def bind(self, address: Any) -> None:
        if ":" in address[0] and self._family != AF_INET6:
            raise OSError("wrong family")
        self.bound = address

    async def connect(self, address: Any) -> None:
        self.ip, self.port = address[0], address[1]
        assert self.ip not in self.scenario.sockets
        self.scenario.sockets[self.ip] = self
        self.scenario.connect_times[self.ip] = corral.current_time()
        delay, result = self.scenario.ip_dict[self.ip]
        await corral.sleep(delay)
        if result == "error":
            raise OSError("sorry")
        if result == "postconnect_fail":
            self.failing = True
        self.succeeded = True

    def close(self) -> None:
        self.closed = True

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        # SocketStream sets its defaults here: a "postconnect_fail" socket
        # fails then with something that is not an OSError.
        if self.failing:
            raise KeyboardInterrupt
        self.options[(level, optname)] = value


class Scenario(SocketFactory, HostnameResolver):
    def __init__(
        self, port: int, ip_list: list[tuple[str, float, str]], supported_families: set[int]
    ) -> None:
        ip_order = [ip for ip, _, _ in ip_list]
        assert len(set(ip_order)) == len(ip_list)
        self.ip_dict: dict[str, tuple[float, str]] = {}
        for ip, delay, result in ip_list:
            assert delay >= 0
            assert result in ("error", "success", "postconnect_fail")
            self.ip_dict[ip] = (delay, result)
        self.port = port
        self.ip_order = ip_order
        self.supported_families = supported_families
        self.created: list[FakeSocket] = []
        self.sockets: dict[str, FakeSocket] = {}
        self.connect_times: dict[str, float] = {}

    def socket(self, family: Any = None, type: Any = None, proto: Any = None) -> FakeSocket:
        assert type == csocket.SOCK_STREAM
        if family not in self.supported_families:
            raise OSError("pretending not to support this family")
        sock = FakeSocket(self, family, type, proto)
        self.created.append(sock)
        return sock

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: Any,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, Any, int, str, Any]]:
        assert host == b"test.example.com"
        assert port == self.port
        assert (family, type, proto, flags) == (0, csocket.SOCK_STREAM, 0, 0)
        entries: list[tuple[Any, Any, int, str, Any]] = []
        for ip in self.ip_order:
            if ":" in ip:
                entries.append((AF_INET6, csocket.SOCK_STREAM, 6, "", (ip, self.port, 0, 0)))
            else:
                entries.append((AF_INET, csocket.SOCK_STREAM, 6, "", (ip, self.port)))
        return entries

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError

    def check(self, succeeded: Any) -> None:
        # Every socket made but the winner is closed.
        for sock in self.created:
            assert sock.closed == (sock is not succeeded)
        for ip, sock in self.sockets.items():
            assert ip in self.ip_dict
            assert sock.port == self.port


async def run_scenario(
    port: int,
    ip_list: list[tuple[str, float, str]],
    *,
    ipv4_supported: bool = True,
    ipv6_supported: bool = True,
    expect_error: Any = (),
    **kwargs: Any,
) -> tuple[Any, Scenario]:
    families: set[int] = set()
    if ipv4_supported:
        families.add(AF_INET)
    if ipv6_supported:
        families.add(AF_INET6)
    scenario = Scenario(port, ip_list, families)
    csocket.set_custom_hostname_resolver(scenario)
    csocket.set_custom_socket_factory(scenario)
    try:
        stream = await open_tcp_stream("test.example.com", port, **kwargs)
        assert expect_error == ()
        scenario.check(stream.socket)
        return stream.socket, scenario
    except AssertionError:  # pragma: no cover
        raise
    except expect_error as exc:
        scenario.check(None)
        return exc, scenario


async def test_one_host_quick_success(autojump_clock: MockClock) -> None:
    sock, _ = await run_scenario(80, [("1.2.3.4", 0.123, "success")])
    assert sock.ip == "1.2.3.4"
    assert corral.current_time() == 0.123


async def test_one_host_slow_success(autojump_clock: MockClock) -> None:
    sock, _ = await run_scenario(81, [("1.2.3.4", 100, "success")])
    assert sock.ip == "1.2.3.4"
    assert corral.current_time() == 100


async def test_one_host_quick_fail(autojump_clock: MockClock) -> None:
    exc, _ = await run_scenario(82, [("1.2.3.4", 0.123, "error")], expect_error=OSError)
    assert isinstance(exc, OSError)
    assert str(exc) == "all attempts to connect to test.example.com:82 failed"
    assert corral.current_time() == 0.123


async def test_one_host_slow_fail(autojump_clock: MockClock) -> None:
    exc, _ = await run_scenario(83, [("1.2.3.4", 100, "error")], expect_error=OSError)
    assert isinstance(exc, OSError)
    assert corral.current_time() == 100


async def test_one_host_failed_after_connect(autojump_clock: MockClock) -> None:
    # Making the stream fails after the connect: the socket is closed.
    exc, _ = await run_scenario(
        83, [("1.2.3.4", 1, "postconnect_fail")], expect_error=KeyboardInterrupt
    )
    assert isinstance(exc, KeyboardInterrupt)


async def test_basic_fallthrough(autojump_clock: MockClock) -> None:
    # With the default 0.250 s delay, the third attempt wins.
    sock, scenario = await run_scenario(
        80,
        [("1.1.1.1", 1, "success"), ("2.2.2.2", 1, "success"), ("3.3.3.3", 0.2, "success")],
    )
    assert sock.ip == "3.3.3.3"
    assert corral.current_time() == 0.250 + 0.250 + 0.2
    assert scenario.connect_times == {"1.1.1.1": 0, "2.2.2.2": 0.250, "3.3.3.3": 0.500}


async def test_early_success(autojump_clock: MockClock) -> None:
    sock, scenario = await run_scenario(
        80,
        [("1.1.1.1", 1, "success"), ("2.2.2.2", 0.1, "success"), ("3.3.3.3", 0.2, "success")],
    )
    assert sock.ip == "2.2.2.2"
    assert corral.current_time() == 0.250 + 0.1
    # 3.3.3.3 was never tried.
    assert scenario.connect_times == {"1.1.1.1": 0, "2.2.2.2": 0.250}


async def test_custom_delay(autojump_clock: MockClock) -> None:
    sock, scenario = await run_scenario(
        80,
        [("1.1.1.1", 1, "success"), ("2.2.2.2", 1, "success"), ("3.3.3.3", 0.2, "success")],
        happy_eyeballs_delay=0.450,
    )
    assert sock.ip == "1.1.1.1"
    assert corral.current_time() == 1
    assert scenario.connect_times == {"1.1.1.1": 0, "2.2.2.2": 0.450, "3.3.3.3": 0.900}


async def test_none_delay_means_the_default(autojump_clock: MockClock) -> None:
    sock, scenario = await run_scenario(
        80,
        [("1.1.1.1", 1, "success"), ("2.2.2.2", 1, "success"), ("3.3.3.3", 0.2, "success")],
        happy_eyeballs_delay=None,
    )
    assert sock.ip == "3.3.3.3"
    assert corral.current_time() == 0.250 + 0.250 + 0.2
    assert scenario.connect_times == {"1.1.1.1": 0, "2.2.2.2": 0.250, "3.3.3.3": 0.500}


async def test_errors_expedite_the_next_attempt(autojump_clock: MockClock) -> None:
    sock, scenario = await run_scenario(
        80,
        [
            ("1.1.1.1", 0.1, "error"),
            ("2.2.2.2", 0.2, "error"),
            ("3.3.3.3", 10, "success"),
            ("4.4.4.4", 0.25, "success"),
        ],
    )
    assert sock.ip == "4.4.4.4"
    assert corral.current_time() == 0.1 + 0.2 + 0.25 + 0.25
    assert scenario.connect_times == {
        "1.1.1.1": 0,
        "2.2.2.2": 0.1,
        "3.3.3.3": 0.1 + 0.2,
        "4.4.4.4": 0.1 + 0.2 + 0.25,
    }


async def test_all_fail(autojump_clock: MockClock) -> None:
    exc, scenario = await run_scenario(
        80,
        [
            ("1.1.1.1", 0.1, "error"),
            ("2.2.2.2", 0.2, "error"),
            ("3.3.3.3", 10, "error"),
            ("4.4.4.4", 0.250, "error"),
        ],
        expect_error=OSError,
    )
    assert isinstance(exc, OSError)
    assert str(exc) == "all attempts to connect to test.example.com:80 failed"
    group = exc.__cause__
    assert isinstance(group, ExceptionGroup)
    assert str(group) == "all attempts to connect to test.example.com:80 failed (4 sub-exceptions)"
    assert [str(e) for e in group.exceptions] == ["sorry"] * 4
    assert corral.current_time() == 0.1 + 0.2 + 10
    assert scenario.connect_times == {
        "1.1.1.1": 0,
        "2.2.2.2": 0.1,
        "3.3.3.3": 0.1 + 0.2,
        "4.4.4.4": 0.1 + 0.2 + 0.25,
    }


async def test_multi_success(autojump_clock: MockClock) -> None:
    # Three attempts finish at the same moment: exactly one wins, the
    # others are closed.
    sock, scenario = await run_scenario(
        80,
        [
            ("1.1.1.1", 0.5, "error"),
            ("2.2.2.2", 10, "success"),
            ("3.3.3.3", 10 - 1, "success"),
            ("4.4.4.4", 10 - 2, "success"),
            ("5.5.5.5", 0.5, "error"),
        ],
        happy_eyeballs_delay=1,
    )
    assert not scenario.sockets["1.1.1.1"].succeeded
    assert not scenario.sockets["5.5.5.5"].succeeded
    assert sock.ip in ("2.2.2.2", "3.3.3.3", "4.4.4.4")
    assert corral.current_time() == 0.5 + 10
    assert scenario.connect_times == {
        "1.1.1.1": 0,
        "2.2.2.2": 0.5,
        "3.3.3.3": 1.5,
        "4.4.4.4": 2.5,
        "5.5.5.5": 3.5,
    }


async def test_does_reorder(autojump_clock: MockClock) -> None:
    sock, scenario = await run_scenario(
        80,
        [
            ("1.1.1.1", 10, "error"),
            # This would win if it were tried second...
            ("2.2.2.2", 1, "success"),
            # ...but the other family goes second (RFC 6555 section 5.4).
            ("::3", 0.5, "success"),
        ],
        happy_eyeballs_delay=1,
    )
    assert sock.ip == "::3"
    assert corral.current_time() == 1 + 0.5
    assert scenario.connect_times == {"1.1.1.1": 0, "::3": 1}


async def test_handles_no_ipv4(autojump_clock: MockClock) -> None:
    # IPv4 sockets fail at creation: those attempts fail at once.
    sock, scenario = await run_scenario(
        80,
        [
            ("::1", 10, "success"),
            ("2.2.2.2", 0, "success"),
            ("::3", 0.1, "success"),
            ("4.4.4.4", 0, "success"),
        ],
        happy_eyeballs_delay=1,
        ipv4_supported=False,
    )
    assert sock.ip == "::3"
    assert corral.current_time() == 1 + 0.1
    assert scenario.connect_times == {"::1": 0, "::3": 1.0}


async def test_handles_no_ipv6(autojump_clock: MockClock) -> None:
    sock, scenario = await run_scenario(
        80,
        [
            ("::1", 0, "success"),
            ("2.2.2.2", 10, "success"),
            ("::3", 0, "success"),
            ("4.4.4.4", 0.1, "success"),
        ],
        happy_eyeballs_delay=1,
        ipv6_supported=False,
    )
    assert sock.ip == "4.4.4.4"
    assert corral.current_time() == 1 + 0.1
    assert scenario.connect_times == {"2.2.2.2": 0, "4.4.4.4": 1.0}


async def test_no_hosts(autojump_clock: MockClock) -> None:
    exc, _ = await run_scenario(80, [], expect_error=OSError)
    assert str(exc) == "no results found for hostname lookup: test.example.com:80"


async def test_cancel(autojump_clock: MockClock) -> None:
    with corral.move_on_after(5) as cancel_scope:
        exc, scenario = await run_scenario(
            80,
            [
                ("1.1.1.1", 10, "success"),
                ("2.2.2.2", 10, "success"),
                ("3.3.3.3", 10, "success"),
                ("4.4.4.4", 10, "success"),
            ],
            expect_error=BaseExceptionGroup,
        )
        # One or more Cancelled, all belonging to this scope: re-raising
        # lets the scope catch them.
        raise exc
    assert cancel_scope.cancelled_caught
    assert corral.current_time() == 5
    scenario.check(succeeded=None)


async def test_local_address_with_fakes(autojump_clock: MockClock) -> None:
    sock, scenario = await run_scenario(
        80,
        [("::1", 1, "success"), ("2.2.2.2", 0.5, "success")],
        happy_eyeballs_delay=0.1,
        local_address="::",
    )
    # The IPv4 attempt cannot bind an IPv6 address: it fails at once; the
    # IPv6 one binds (address only) and wins.
    assert sock.ip == "::1"
    assert sock.bound == ("::", 0)
    if hasattr(csocket, "IP_BIND_ADDRESS_NO_PORT"):  # Linux's
        assert sock.options[(csocket.IPPROTO_IP, csocket.IP_BIND_ADDRESS_NO_PORT)] == 1
    assert scenario.connect_times == {"::1": 0}
    assert corral.current_time() == 1
