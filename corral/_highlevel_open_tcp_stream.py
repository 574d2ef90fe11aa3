"""open_tcp_stream: connect to a host name over TCP, trying its addresses
with the "happy eyeballs" algorithm (RFC 6555).

Why: a name often resolves to several addresses (IPv6 and IPv4, several
mirrors), and some may be unreachable. Trying them one after another can
stall for the whole TCP connect timeout (tens of seconds) on a black-holed
first address; trying them all at once loads the network and the server for
nothing. RFC 6555's middle way: start with the first address; whenever the
current attempt fails, or has run ``happy_eyeballs_delay`` seconds without
an answer, start the next one *as well*; the first attempt to connect wins
and every other is cancelled.

The addresses are tried in the resolver's order (it knows the host's
address-selection policy, RFC 6724), with one change from RFC 6555 section
5.4: the second attempt uses the other address family than the first, if
there is one, so a broken IPv6 (or IPv4) path costs at most one delay.

Nothing is cached between calls: caching reachability (which RFC 6555
section 4 asks of implementations that race families *simultaneously*) is
hard to get right when networks change, and the sequential variant here
does not need it.

How getaddrinfo is called: without ``AI_ADDRCONFIG``. In practice that flag
helps little (glibc still returns IPv6 addresses as soon as any link-local
address exists) and hurts in odd cases (a literal ``::1`` fails on a host
without a global IPv6 address). The price of not using it is at worst one
``happy_eyeballs_delay`` spent on an unreachable family.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Any

from . import socket as csocket
from ._core import open_nursery
from ._highlevel_socket import SocketStream
from ._socket import SocketType
from ._sync import Event
from ._timeouts import move_on_after

__all__ = [
    "DEFAULT_DELAY",
    "format_host_port",
    "open_tcp_stream",
    "reorder_for_rfc_6555_section_5_4",
]

#: Seconds to give an attempt before starting the next one in parallel.
#: RFC 6555 section 6 reports 300 ms in browsers; 250 ms is Trio's default.
DEFAULT_DELAY = 0.250


def reorder_for_rfc_6555_section_5_4(targets: MutableSequence[Any]) -> None:
    """Move the first entry of another address family than the first entry
    to second place, in place (RFC 6555 section 5.4); the rest keeps its
    order. ``targets`` are getaddrinfo entries (family first)."""
    first_family = targets[0][0] if targets else None
    for i in range(1, len(targets)):
        if targets[i][0] != first_family:
            if i != 1:
                targets.insert(1, targets.pop(i))
            return


def format_host_port(host: str | bytes, port: int | str) -> str:
    """``host:port`` for messages, with IPv6 literals in brackets
    (``[::1]:80``)."""
    if isinstance(host, bytes):
        host = host.decode("ascii")
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class _Attempts:
    """The sockets of one open_tcp_stream call: every socket made is closed
    when the call ends, except the winner, handed over to the stream."""

    def __init__(self) -> None:
        self.sockets: list[SocketType] = []
        self.errors: list[OSError] = []
        self.winner: SocketType | None = None

    def close_all_but_winner(self) -> None:
        errors: list[BaseException] = []
        for sock in self.sockets:
            if sock is self.winner:
                continue
            try:
                sock.close()
            except BaseException as exc:  # a custom socket's close failed
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup("errors while closing sockets", errors)


async def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
    local_address: str | None = None,
) -> SocketStream:
    """Connect to ``host``:``port`` over TCP and return a
    :class:`corral.SocketStream`.

    If ``host`` has several addresses they are tried with the happy
    eyeballs algorithm (see the module documentation): one at a time in the
    resolver's order (alternating the family for the second one), each next
    attempt starting when the previous one failed or has been pending for
    ``happy_eyeballs_delay`` seconds; the first to connect wins, and the
    others are cancelled and closed.

    Args:
      host: a host name, or an IPv4 or IPv6 address (``str`` or ``bytes``).
      port: the port number.
      happy_eyeballs_delay: seconds before starting the next attempt while
        one is pending. ``None`` means the default (0.25 s), as in Trio.
      local_address: the local IP address (or a name for one) to connect
        from; ``None`` lets the kernel choose. Only addresses of the same
        family as it can be reached: ``"0.0.0.0"`` or ``"::"`` force IPv4 or
        IPv6 without choosing an interface. The socket is bound with
        ``IP_BIND_ADDRESS_NO_PORT`` where the system has it, so the port is
        picked at connect time and stays shareable between connections to
        different peers.

    Cancellation: every attempt is cancelled and every socket closed; no
    connection is left open.

    Returns:
      The connected :class:`corral.SocketStream`.

    Raises:
      ValueError: ``host`` is not ``str`` or ``bytes``.
      TypeError: ``port`` is not an ``int``.
      socket.gaierror: the name could not be resolved.
      OSError: every attempt failed: ``"all attempts to connect to
        host:port failed"``, with ``__cause__`` an :class:`ExceptionGroup`
        of each attempt's error (a ``local_address`` the kernel could not
        bind for an address reports ``"local_address=... is incompatible
        with remote address ..."``).
    """
    # Refuse what getaddrinfo would accept with platform-dependent meaning
    # (None, port names, "").
    if not isinstance(host, (str, bytes)):
        raise ValueError(f"host must be str or bytes, not {host!r}")
    if not isinstance(port, int):
        raise TypeError(f"port must be int, not {port!r}")
    delay = DEFAULT_DELAY if happy_eyeballs_delay is None else happy_eyeballs_delay

    targets = await csocket.getaddrinfo(host, port, type=csocket.SOCK_STREAM)
    if not targets:
        # getaddrinfo raises rather than returning nothing; a custom
        # resolver might not.
        raise OSError(f"no results found for hostname lookup: {format_host_port(host, port)}")
    reorder_for_rfc_6555_section_5_4(targets)

    attempts = _Attempts()

    async def attempt(family: int, type_: int, proto: int, sockaddr: Any, failed: Event) -> None:
        try:
            sock = csocket.socket(family, type_, proto)
            attempts.sockets.append(sock)
            if local_address is not None:
                # Binding before connect picks a local port that no other
                # connection uses, which can exhaust ports; with
                # IP_BIND_ADDRESS_NO_PORT (Linux 4.2+) bind takes only the
                # address and connect picks a port unique per 4-tuple.
                try:
                    sock.setsockopt(csocket.IPPROTO_IP, csocket.IP_BIND_ADDRESS_NO_PORT, 1)
                except (OSError, AttributeError):
                    pass
                try:
                    await sock.bind((local_address, 0))
                except OSError:
                    raise OSError(
                        f"local_address={local_address!r} is incompatible "
                        f"with remote address {sockaddr!r}"
                    ) from None
            await sock.connect(sockaddr)
        except OSError as exc:
            # Let the next attempt start now rather than after the delay.
            attempts.errors.append(exc)
            failed.set()
            return
        if attempts.winner is None:
            attempts.winner = sock
            nursery.cancel_scope.cancel(reason="successfully found a socket")

    try:
        async with open_nursery() as nursery:
            for family, type_, proto, _, sockaddr in targets:
                failed = Event()
                nursery.start_soon(attempt, family, type_, proto, sockaddr, failed)
                with move_on_after(delay):
                    await failed.wait()
        winner = attempts.winner
        if winner is None:
            msg = f"all attempts to connect to {format_host_port(host, port)} failed"
            raise OSError(msg) from ExceptionGroup(msg, attempts.errors)
        stream = SocketStream(winner)
    except BaseException:
        # The winner too, if making its stream failed.
        attempts.winner = None
        attempts.close_all_but_winner()
        raise
    attempts.close_all_but_winner()
    return stream
