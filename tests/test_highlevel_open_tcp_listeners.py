"""open_tcp_listeners and serve_tcp on every backend: wildcard and dual-stack
listeners, socket options, the backlog, cleanup on errors, a thousand
concurrent connections, the connection limit, graceful shutdown, and a
server that keeps serving through EMFILE (in a subprocess with a low
RLIMIT_NOFILE)."""

from __future__ import annotations

import errno
import os
import re
import select
import socket as stdlib_socket
import subprocess
import sys
import textwrap
import threading
import time
from functools import partial
from typing import Any

import pytest
from net_helpers import (  # noqa: F401
    current_backend_name,
    needs_ipv6,
    net_backend,
    run_on_backend,
)

import corral
import corral.socket as csocket
from corral import SocketListener, SocketStream, open_tcp_listeners, serve_tcp
from corral.abc import HostnameResolver, SocketFactory
from corral.testing import open_stream_to_socket_listener, wait_all_tasks_blocked

pytestmark = pytest.mark.corral(run=run_on_backend)


# -- real sockets ----------------------------------------------------------------


async def test_open_tcp_listeners_wildcard_dual_stack() -> None:
    listeners = await open_tcp_listeners(0)
    assert isinstance(listeners, list)
    families = set()
    for listener in listeners:
        assert isinstance(listener, SocketListener)
        sock = listener.socket
        families.add(sock.family)
        assert sock.getsockname()[0] in ("0.0.0.0", "::")
        assert sock.getsockname()[1] != 0
        if sys.platform != "win32":  # (where SO_REUSEADDR would mean port sharing)
            assert sock.getsockopt(csocket.SOL_SOCKET, csocket.SO_REUSEADDR)
        assert sock.getsockopt(csocket.SOL_SOCKET, csocket.SO_ACCEPTCONN)
        if sock.family == csocket.AF_INET6:
            # IPv6-only, so that it does not take the IPv4 port too.
            assert sock.getsockopt(csocket.IPPROTO_IPV6, csocket.IPV6_V6ONLY)
    assert csocket.AF_INET in families

    for listener in listeners:
        # The backlog holds at least two connections before any accept.
        c1 = await open_stream_to_socket_listener(listener)
        c2 = await open_stream_to_socket_listener(listener)
        s1 = await listener.accept()
        s2 = await listener.accept()
        assert s1.socket.family == listener.socket.family
        await s1.send_all(b"1")
        await s2.send_all(b"2")
        assert {await c1.receive_some(1), await c2.receive_some(1)} == {b"1", b"2"}
        for resource in (c1, c2, s1, s2):
            await resource.aclose()
    for listener in listeners:
        await listener.aclose()


@needs_ipv6
async def test_open_tcp_listeners_both_families_when_ipv6_works() -> None:
    listeners = await open_tcp_listeners(0)
    try:
        assert sorted(lst.socket.family for lst in listeners) == [
            csocket.AF_INET,
            csocket.AF_INET6,
        ]
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_open_tcp_listeners_specific_host_and_port() -> None:
    sock = csocket.socket()
    await sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    sock.close()
    (listener,) = await open_tcp_listeners(port, host=host)
    async with listener:
        assert listener.socket.getsockname() == (host, port)
    (listener,) = await open_tcp_listeners(0, host=b"127.0.0.1")
    async with listener:
        assert listener.socket.getsockname()[0] == "127.0.0.1"


@needs_ipv6
async def test_open_tcp_listeners_ipv6_is_v6only() -> None:
    # The IPv6 wildcard without IPV6_V6ONLY would take IPv4 connections
    # too (as v4-mapped addresses).
    (listener,) = await open_tcp_listeners(0, host="::")
    async with listener:
        port = listener.socket.getsockname()[1]
        sock = csocket.socket()
        # (os.strerror's text: Windows has none for Winsock codes.)
        refused = re.escape(os.strerror(errno.ECONNREFUSED))
        with pytest.raises(OSError, match=rf"Error connecting to .*{refused}$"):
            await sock.connect(("127.0.0.1", port))
        sock.close()


@pytest.mark.skipif(
    sys.platform == "win32",
    reason="Windows' SO_REUSEADDR shares ports: the rebind rules are POSIX's",
)
async def test_open_tcp_listeners_rebind_with_lingering_connections() -> None:
    (l1,) = await open_tcp_listeners(0, host="127.0.0.1")
    sockaddr1 = l1.socket.getsockname()

    # A second bind while the first listener lives fails even with
    # SO_REUSEADDR.
    with stdlib_socket.socket() as probe:
        probe.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match=r"Address already in use$"):
            probe.bind(sockaddr1)

    # An established connection and one in TIME_WAIT (server closed first)
    # do not stop a new listener from taking the port.
    c_established = await open_stream_to_socket_listener(l1)
    s_established = await l1.accept()
    c_time_wait = await open_stream_to_socket_listener(l1)
    s_time_wait = await l1.accept()
    await s_time_wait.aclose()
    await l1.aclose()

    (l2,) = await open_tcp_listeners(sockaddr1[1], host="127.0.0.1")
    assert l2.socket.getsockname() == sockaddr1
    assert s_established.socket.getsockname() == sockaddr1
    for resource in (l2, c_established, s_established, c_time_wait):
        await resource.aclose()


async def test_open_tcp_listeners_bad_arguments() -> None:
    for host in ("127.0.0.1", None):
        for port in (None, b"80", "http", 80.0):
            with pytest.raises(TypeError, match=rf"^port must be an int not {port!r}$"):
                await open_tcp_listeners(port, host=host)  # type: ignore[arg-type]
    for backlog in (0.0, 2.18, "10"):
        with pytest.raises(TypeError, match=rf"^backlog must be an int or None, not {backlog!r}$"):
            await open_tcp_listeners(0, host="127.0.0.1", backlog=backlog)  # type: ignore[arg-type]
    with pytest.raises(OSError):
        # An address this machine does not have.
        await open_tcp_listeners(0, host="192.0.2.1")


# -- fake sockets: cleanup, families, backlog --------------------------------------


class FakeOSError(OSError):
    pass


class FakeSocket(csocket.SocketType):
    def __init__(self, family: int, type_: int, proto: int) -> None:
        self._family = stdlib_socket.AddressFamily(family)
        self._type = stdlib_socket.SocketKind(type_)
        self._proto = proto
        self.closed = False
        self.poison_listen = False
        self.backlog: int | None = None
        self.options: dict[tuple[int, int], Any] = {}
        self.bound: Any = None

    @property
    def type(self) -> stdlib_socket.SocketKind:
        return self._type

    @property
    def family(self) -> stdlib_socket.AddressFamily:
        return self._family

    @property
    def proto(self) -> int:
        return self._proto

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        assert (level, optname) == (csocket.SOL_SOCKET, csocket.SO_ACCEPTCONN)
        return 1

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        self.options[(level, optname)] = value

    async def bind(self, address: Any) -> None:
        self.bound = address

    def listen(self, backlog: int = 128) -> None:
        assert self.backlog is None
        self.backlog = backlog
        if self.poison_listen:
            raise FakeOSError("whoops")

    def close(self) -> None:
        self.closed = True


class FakeSocketFactory(SocketFactory):
    def __init__(self, poison_after: int, raise_on_family: dict[int, int] | None = None) -> None:
        self.poison_after = poison_after
        self.sockets: list[FakeSocket] = []
        self.raise_on_family = raise_on_family or {}

    def socket(self, family: Any = None, type: Any = None, proto: int = 0) -> FakeSocket:
        if family in self.raise_on_family:
            raise OSError(self.raise_on_family[family], "nope")
        sock = FakeSocket(family, type, proto)
        self.poison_after -= 1
        if self.poison_after == 0:
            sock.poison_listen = True
        self.sockets.append(sock)
        return sock


class FakeHostnameResolver(HostnameResolver):
    def __init__(self, family_addr_pairs: list[tuple[int, str]]) -> None:
        self.family_addr_pairs = family_addr_pairs

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: Any,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, Any, int, str, Any]]:
        assert flags & csocket.AI_PASSIVE
        return [
            (
                fam,
                csocket.SOCK_STREAM,
                0,
                "",
                (addr, port) if fam == csocket.AF_INET else (addr, port, 0, 0),
            )
            for fam, addr in self.family_addr_pairs
        ]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        raise NotImplementedError


async def test_open_tcp_listeners_closes_everything_on_error() -> None:
    factory = FakeSocketFactory(3)
    csocket.set_custom_socket_factory(factory)
    csocket.set_custom_hostname_resolver(
        FakeHostnameResolver(
            [
                (csocket.AF_INET, "1.1.1.1"),
                (csocket.AF_INET, "2.2.2.2"),
                (csocket.AF_INET, "3.3.3.3"),
            ]
        )
    )
    with pytest.raises(FakeOSError):
        await open_tcp_listeners(80, host="example.org")
    assert len(factory.sockets) == 3
    assert all(sock.closed for sock in factory.sockets)


async def test_open_tcp_listeners_sets_options_before_bind() -> None:
    factory = FakeSocketFactory(99)
    csocket.set_custom_socket_factory(factory)
    csocket.set_custom_hostname_resolver(
        FakeHostnameResolver([(csocket.AF_INET, "1.1.1.1"), (csocket.AF_INET6, "::2")])
    )
    listeners = await open_tcp_listeners(80, host="example.org")
    v4, v6 = (lst.socket for lst in listeners)
    assert isinstance(v4, FakeSocket) and isinstance(v6, FakeSocket)
    # (No SO_REUSEADDR on Windows, where it would mean port sharing.)
    reuse = {} if sys.platform == "win32" else {(csocket.SOL_SOCKET, csocket.SO_REUSEADDR): 1}
    assert v4.options == reuse
    assert v6.options == {**reuse, (csocket.IPPROTO_IPV6, csocket.IPV6_V6ONLY): 1}
    assert v4.bound == ("1.1.1.1", 80)
    assert v6.bound == ("::2", 80, 0, 0)


@pytest.mark.parametrize(
    "try_families",
    [{csocket.AF_INET}, {csocket.AF_INET6}, {csocket.AF_INET, csocket.AF_INET6}],
)
@pytest.mark.parametrize(
    "fail_families",
    [{csocket.AF_INET}, {csocket.AF_INET6}, {csocket.AF_INET, csocket.AF_INET6}],
)
async def test_open_tcp_listeners_some_families_unavailable(
    try_families: set[int], fail_families: set[int]
) -> None:
    factory = FakeSocketFactory(10, dict.fromkeys(fail_families, errno.EAFNOSUPPORT))
    csocket.set_custom_socket_factory(factory)
    csocket.set_custom_hostname_resolver(
        FakeHostnameResolver([(family, "foo") for family in sorted(try_families)])
    )
    should_succeed = try_families - fail_families
    if not should_succeed:
        with pytest.raises(
            OSError,
            match=r"^\[Errno \d+\] This system doesn't support any of the kinds of socket "
            r"that that address could use$",
        ) as info:
            await open_tcp_listeners(80, host="example.org")
        assert info.value.errno == errno.EAFNOSUPPORT
        cause = info.value.__cause__
        assert isinstance(cause, ExceptionGroup)
        assert len(cause.exceptions) == len(try_families)
        assert all("nope" in str(exc) for exc in cause.exceptions)
    else:
        listeners = await open_tcp_listeners(80, host="example.org")
        assert {lst.socket.family for lst in listeners} == should_succeed


async def test_open_tcp_listeners_other_socket_errors_propagate() -> None:
    factory = FakeSocketFactory(
        10, {csocket.AF_INET: errno.EAFNOSUPPORT, csocket.AF_INET6: errno.EINVAL}
    )
    csocket.set_custom_socket_factory(factory)
    csocket.set_custom_hostname_resolver(
        FakeHostnameResolver([(csocket.AF_INET, "foo"), (csocket.AF_INET6, "bar")])
    )
    with pytest.raises(OSError, match="nope") as info:
        await open_tcp_listeners(80, host="example.org")
    assert info.value.errno == errno.EINVAL
    assert info.value.__cause__ is None


async def test_open_tcp_listeners_backlog() -> None:
    factory = FakeSocketFactory(99)
    csocket.set_custom_socket_factory(factory)
    for given, expected in [(None, 0xFFFF), (99999999, 0xFFFF), (10, 10), (1, 1)]:
        listeners = await open_tcp_listeners(0, backlog=given)
        assert listeners
        for listener in listeners:
            assert isinstance(listener.socket, FakeSocket)
            assert listener.socket.backlog == expected


# -- serve_tcp ----------------------------------------------------------------------


async def test_serve_tcp_basic() -> None:
    async def handler(stream: SocketStream) -> None:
        await stream.send_all(b"x")

    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(serve_tcp, handler, 0)
        assert isinstance(listeners, list)
        assert all(isinstance(lst, SocketListener) for lst in listeners)
        stream = await open_stream_to_socket_listener(listeners[0])
        async with stream:
            assert await stream.receive_some(1) == b"x"
            # The handler returned: serve_tcp closed its stream.
            assert await stream.receive_some(1) == b""
        nursery.cancel_scope.cancel()


async def test_serve_tcp_a_thousand_concurrent_connections() -> None:
    count = 1000
    active = 0
    peak = 0
    all_in = corral.Event()

    async def echo(stream: SocketStream) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active == count:
            all_in.set()
        try:
            async for data in stream:
                await stream.send_all(data)
        finally:
            active -= 1

    async def client(listener: SocketListener, i: int, done: list[int]) -> None:
        stream = await open_stream_to_socket_listener(listener)
        async with stream:
            message = b"hello %d " % i * 50
            await stream.send_all(message)
            got = bytearray()
            while len(got) < len(message):
                got += await stream.receive_some()
            assert got == message
            # Hold the connection until every client is connected.
            await all_in.wait()
            await stream.send_eof()
            assert await stream.receive_some() == b""
            done.append(i)

    done: list[int] = []
    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve_tcp, echo, 0, host="127.0.0.1"))
        async with corral.open_nursery() as clients:
            for i in range(count):
                clients.start_soon(client, listeners[0], i, done)
        nursery.cancel_scope.cancel()
    assert sorted(done) == list(range(count))
    assert peak == count


async def test_serve_tcp_max_connections_is_passed_through() -> None:
    release = corral.Event()
    active = 0
    peak = 0

    async def handler(stream: SocketStream) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await stream.send_all(b"in")
        await release.wait()
        active -= 1

    async with corral.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(serve_tcp, handler, 0, host="127.0.0.1", max_connections=2)
        )
        streams = [await open_stream_to_socket_listener(listeners[0]) for _ in range(3)]
        await wait_all_tasks_blocked()
        # Two are served; the third waits in the backlog, connected but not
        # accepted.
        assert active == 2
        served = [s for s in streams if s.socket.is_readable()]
        assert len(served) == 2
        (waiting,) = [s for s in streams if s not in served]
        release.set()
        assert await waiting.receive_some() == b"in"
        assert peak == 2
        for stream in streams:
            await stream.aclose()
        nursery.cancel_scope.cancel()
    with pytest.raises(ValueError, match=r"^max_connections must be >= 1$"):
        await serve_tcp(handler, 0, host="127.0.0.1", max_connections=0)


async def test_serve_tcp_shuts_down_gracefully_when_cancelled() -> None:
    cancelled_handlers = 0

    async def handler(stream: SocketStream) -> None:
        nonlocal cancelled_handlers
        await stream.send_all(b"hi")
        try:
            await corral.sleep_forever()
        except corral.Cancelled:
            cancelled_handlers += 1
            raise

    with corral.CancelScope() as scope:
        async with corral.open_nursery() as nursery:
            listeners = await nursery.start(partial(serve_tcp, handler, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            clients = [await open_stream_to_socket_listener(listeners[0]) for _ in range(3)]
            for client in clients:
                assert await client.receive_some() == b"hi"
            scope.cancel()
    assert cancelled_handlers == 3
    # Every handler's stream was closed, and so was the listener.
    for client in clients:
        assert await client.receive_some() == b""
        await client.aclose()
    assert listeners[0].socket.fileno() == -1
    sock = csocket.socket()
    with pytest.raises(OSError, match=rf"{re.escape(os.strerror(errno.ECONNREFUSED))}$"):
        await sock.connect(("127.0.0.1", port))
    sock.close()


async def test_serve_tcp_uses_a_given_handler_nursery() -> None:
    seen: list[bytes] = []

    async def handler(stream: SocketStream) -> None:
        seen.append(await stream.receive_some())

    async with corral.open_nursery() as handlers:
        async with corral.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(serve_tcp, handler, 0, host="127.0.0.1", handler_nursery=handlers)
            )
            client = await open_stream_to_socket_listener(listeners[0])
            await client.send_all(b"via handler nursery")
            await client.aclose()
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert seen == [b"via handler nursery"]


# -- EMFILE: serve_tcp keeps serving through fd exhaustion ---------------------------

_EMFILE_SERVER = textwrap.dedent(
    """
    import functools, logging, os, resource, sys
    import corral

    backend, spare = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")

    async def echo(stream):
        try:
            async for data in stream:
                await stream.send_all(data)
        except corral.BrokenResourceError:
            pass

    async def main():
        async with corral.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(corral.serve_tcp, echo, 0, host="127.0.0.1")
            )
            # Leave room for `spare` more descriptors. RLIMIT_NOFILE bounds
            # the fd *numbers* a process can open (existing ones above the
            # limit keep working), and new fds take the lowest free numbers:
            # stop the limit after `spare` free numbers.
            in_use = {int(n) for n in os.listdir("/proc/self/fd")}
            limit, free = 0, 0
            while free < spare:
                if limit not in in_use:
                    free += 1
                limit += 1
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            print(listeners[0].socket.getsockname()[1], flush=True)
            # Serve until the test closes our stdin.
            await corral.to_thread.run_sync(sys.stdin.read)
            nursery.cancel_scope.cancel()
        print("clean exit", flush=True)

    corral.run(main, backend=backend)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no RLIMIT_NOFILE (resource)")
def test_serve_tcp_survives_emfile() -> None:
    spare = 8
    clients = 3 * spare
    proc = subprocess.Popen(
        [sys.executable, "-c", _EMFILE_SERVER, current_backend_name(), str(spare)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    socks: list[stdlib_socket.socket] = []
    err_lines: list[str] = []
    emfile_logged = threading.Event()

    def drain_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode()
            err_lines.append(line)
            if line.startswith(
                "corral.serve_listeners ERROR accept returned EMFILE (Too many open files)"
            ):
                emfile_logged.set()

    drainer = threading.Thread(target=drain_stderr, daemon=True)
    drainer.start()
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        for i in range(clients):
            sock = stdlib_socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"client %d\n" % i)
            socks.append(sock)
        # No client is served to the end yet, so the server must run out of
        # descriptors: wait until it logs so. (A thread drains its stderr,
        # so that the logging can never block the server.)
        assert emfile_logged.wait(60), "".join(err_lines)
        expected = {sock: b"client %d\n" % i for i, sock in enumerate(socks)}
        got = {sock: b"" for sock in socks}
        pending = set(socks)
        # Only ~`spare` connections fit. Each echo lets us close that
        # client, which frees a descriptor in the server, which then
        # accepts the next one: every client is served in the end.
        deadline = time.monotonic() + 60  # a hang guard, not a timing check
        while pending and time.monotonic() < deadline:
            readable, _, _ = select.select(list(pending), [], [], 1.0)
            for sock in readable:
                data = sock.recv(100)
                assert data, "the server closed a connection"
                got[sock] += data
                if got[sock] == expected[sock]:
                    pending.discard(sock)
                    sock.close()
        assert not pending, f"{len(pending)} of {clients} clients were never served"
        # Closing its stdin tells the server to stop.
        proc.stdin.close()
        out = proc.stdout.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for sock in socks:
            sock.close()
        drainer.join(30)
    assert proc.returncode == 0, "".join(err_lines)
    assert out == b"clean exit\n"


# -- the examples built on serve_tcp -------------------------------------------------

EXAMPLES = __import__("pathlib").Path(__file__).resolve().parent.parent / "examples"


def test_chat_server_example_selftest() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "chat_server.py"),
            "--selftest",
            "--backend",
            current_backend_name(),
        ],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    # (Windows' text-mode stdout ends lines with CRLF.)
    assert result.stdout.replace(b"\r\n", b"\n") == b"chat server: selftest passed\n"


def test_echo_server_and_client_examples() -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "tcp_echo_server.py"),
            "--port",
            "0",
            "--backend",
            current_backend_name(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().decode()
        assert line.startswith("echo server: listening on ('127.0.0.1', "), line
        port = line.rsplit(" ", 1)[1].rstrip(")\r\n")
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "tcp_echo_client.py"), "--port", port, "--count", "3"],
            capture_output=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr.decode()
        out = client.stdout.decode().replace("\r\n", "\n")  # (Windows: CRLF)
        assert out.endswith("echo client: all 24 bytes came back\n")
    finally:
        server.kill()
        server.wait()
