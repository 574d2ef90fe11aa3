"""Name resolution for :mod:`corral.socket`: ``getaddrinfo``,
``getnameinfo``, ``getprotobyname``, hostname encoding, the custom resolver
and socket-factory hooks, and turning a user's address into a numeric one.

Resolution is the one part of the socket layer that cannot go through the
completion core: the C library's resolver blocks. So, as in Trio, a lookup
whose host and port are already numeric is answered at once (the C library
does not block for those), and everything else runs in a worker thread
(``corral.to_thread.run_sync(..., abandon_on_cancel=True)``): cancelling a
lookup returns at once and leaves the thread to finish on its own.
"""

from __future__ import annotations

import os
import socket as _stdlib_socket
from typing import TYPE_CHECKING, Any

from ._core import RunVar, cancel_shielded_checkpoint, checkpoint_if_cancelled

if TYPE_CHECKING:
    from ._abc import HostnameResolver, SocketFactory

_AF_INET = _stdlib_socket.AF_INET
_AF_INET6 = _stdlib_socket.AF_INET6
_AF_UNIX = getattr(_stdlib_socket, "AF_UNIX", None)
_inet_pton = _stdlib_socket.inet_pton

# getaddrinfo with these flags never blocks: it only parses numbers.
# AI_NUMERICSERV is missing on some platforms' Python builds.
_NUMERIC_ONLY = _stdlib_socket.AI_NUMERICHOST | getattr(_stdlib_socket, "AI_NUMERICSERV", 0)

_resolver: RunVar[HostnameResolver | None] = RunVar("corral_hostname_resolver")
_socket_factory: RunVar[SocketFactory | None] = RunVar("corral_socket_factory")


def encode_hostname(hostname: str) -> bytes:
    """Encode ``hostname`` the way corral's :func:`getaddrinfo` does before
    asking a resolver: ASCII names unchanged, anything else with IDNA 2008
    (UTS-46 mapping, so capital letters are lowercased), not the IDNA 2003
    codec the standard library uses (bpo-17305).

    Use it to learn exactly which name corral will look up.

    Non-ASCII names are encoded with IDNA 2008 + UTS 46 (as Trio does) when
    the third-party ``idna`` package is installed, else with the standard
    library's IDNA 2003 codec (runtime dependencies stay cffi, outcome,
    sniffio and attrs). The two agree on common names; they differ on a few
    characters such as "ß".

    Raises:
      UnicodeError: the name is not valid IDNA.
    """
    try:
        return hostname.encode("ascii")
    except UnicodeEncodeError:
        pass
    # Imported on first use: only non-ASCII names need it. (``::1`` and other
    # ASCII strings the idna package would reject never get here.)
    try:
        import idna
    except ImportError:
        return hostname.encode("idna")
    encoded: bytes = idna.encode(hostname, uts46=True)
    return encoded


def set_custom_hostname_resolver(
    hostname_resolver: HostnameResolver | None,
) -> HostnameResolver | None:
    """Make :func:`getaddrinfo` and :func:`getnameinfo` ask
    ``hostname_resolver`` (a :class:`corral.abc.HostnameResolver`) instead of
    the system resolver, for the rest of the current run; ``None`` restores
    the system resolver. Every other name lookup in corral goes through those
    two functions, so this is the one hook (mostly useful in tests).

    Numeric hosts never reach the resolver: they are parsed locally.

    Returns:
      The previous resolver, or ``None``.

    Raises:
      RuntimeError: called outside a run.
    """
    old = _resolver.get(None)
    _resolver.set(hostname_resolver)
    return old


def set_custom_socket_factory(
    socket_factory: SocketFactory | None,
) -> SocketFactory | None:
    """Make :func:`corral.socket.socket` (without ``fileno``) return
    ``socket_factory.socket(family, type, proto)`` for the rest of the
    current run; ``None`` restores the default. Useful in tests.

    Returns:
      The previous factory, or ``None``.

    Raises:
      RuntimeError: called outside a run.
    """
    old = _socket_factory.get(None)
    _socket_factory.set(socket_factory)
    return old


def current_socket_factory() -> SocketFactory | None:
    """The run's custom socket factory, or ``None`` (also outside a run)."""
    try:
        return _socket_factory.get(None)
    except RuntimeError:
        return None


async def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[Any, Any, int, str, Any]]:
    """Resolve a host and port: :func:`socket.getaddrinfo`, but async.

    Numeric hosts and ports are answered without a thread; other hosts are
    IDNA-2008 encoded (:func:`corral.lowlevel.encode_hostname`) and resolved
    by the custom resolver (:func:`set_custom_hostname_resolver`) if there is
    one, else by the system resolver in a worker thread.

    Raises:
      socket.gaierror: the name cannot be resolved.
      corral.Cancelled: cancelled; a thread lookup is abandoned (it finishes
        in the background, its result is dropped).

    This is always a checkpoint.
    """
    await checkpoint_if_cancelled()
    try:
        result = _stdlib_socket.getaddrinfo(host, port, family, type, proto, flags | _NUMERIC_ONLY)
    except _stdlib_socket.gaierror as exc:
        if exc.errno != _stdlib_socket.EAI_NONAME:
            await cancel_shielded_checkpoint()
            raise
    except BaseException:
        await cancel_shielded_checkpoint()
        raise
    else:
        await cancel_shielded_checkpoint()
        return result
    # Not numeric: a real name. It may take a while.
    if isinstance(host, str):
        host = encode_hostname(host)
    resolver = _resolver.get(None)
    if resolver is not None:
        return await resolver.getaddrinfo(host, port, family, type, proto, flags)
    from . import to_thread

    return await to_thread.run_sync(
        _stdlib_socket.getaddrinfo,
        host,
        port,
        family,
        type,
        proto,
        flags,
        abandon_on_cancel=True,
    )


async def getnameinfo(
    sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
) -> tuple[str, str]:
    """Look up a host and service name for a numeric address:
    :func:`socket.getnameinfo`, but async (the custom resolver if set, else
    a worker thread). Cancellation abandons the thread.
    """
    resolver = _resolver.get(None)
    if resolver is not None:
        return await resolver.getnameinfo(sockaddr, flags)
    from . import to_thread

    return await to_thread.run_sync(
        _stdlib_socket.getnameinfo, sockaddr, flags, abandon_on_cancel=True
    )


async def getprotobyname(name: str) -> int:
    """:func:`socket.getprotobyname`, but async (in a worker thread). Rarely
    needed."""
    from . import to_thread

    return await to_thread.run_sync(_stdlib_socket.getprotobyname, name, abandon_on_cancel=True)


async def resolve_address(
    type_: int,
    family: int,
    proto: int,
    address: Any,
    *,
    local: bool,
    v6only: Any = None,
) -> Any:
    """Turn ``address`` into the numeric form the kernel takes, as Trio's
    sockets do before ``bind``/``connect``/``sendto``.

    * AF_INET / AF_INET6: ``(host, port[, flowinfo[, scope_id]])``; a host of
      ``""`` means "any" (``None`` to getaddrinfo), ``"<broadcast>"`` means
      255.255.255.255; names go through :func:`getaddrinfo` (``AI_PASSIVE``
      when ``local``; ``AI_V4MAPPED`` on an IPv6 socket that is not
      v6-only, which ``v6only()`` tells). An IPv6 flowinfo/scope_id given by
      the caller is kept.
    * AF_UNIX: path-likes become ``str``/``bytes``.
    * Other families: returned unchanged.

    Not a checkpoint when the address is already numeric (the fast path for
    ``sendto``); otherwise it awaits :func:`getaddrinfo`.

    Raises:
      ValueError: an IP address that is not a tuple of the right length.
      socket.gaierror: resolution failed.
    """
    if family == _AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise ValueError("address should be a (host, port) tuple")
    elif family == _AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise ValueError("address should be a (host, port, [flowinfo, [scopeid]]) tuple")
    elif family == _AF_UNIX:
        if not isinstance(address, (str, bytes, os.PathLike)):
            raise TypeError(
                f"AF_UNIX address must be a str, bytes or path-like object, "
                f"not {type(address).__name__}"
            )
        return os.fspath(address)
    else:
        return address
    host = address[0]
    port = address[1]
    # Fast path: numeric host, integer port (every UDP sendto passes here).
    if isinstance(port, int) and isinstance(host, str):
        try:
            _inet_pton(family, host)
        except OSError:
            pass
        else:
            return address
    if host == "":
        host = None
    elif host == "<broadcast>":
        host = "255.255.255.255"
    flags = _stdlib_socket.AI_PASSIVE if local else 0
    # AI_ADDRCONFIG is deliberately not used: the family is explicit, and it
    # would hide ::1 on machines without an IPv6 route.
    if family == _AF_INET6 and not (v6only() if callable(v6only) else v6only):
        flags |= _stdlib_socket.AI_V4MAPPED
    results = await getaddrinfo(host, port, family, type_, proto, flags)
    # getaddrinfo never returns an empty list (it raises instead).
    normed = results[0][4]
    if family == _AF_INET6:
        fields = list(normed)
        if len(address) >= 3:
            fields[2] = address[2]
        if len(address) >= 4:
            fields[3] = address[3]
        return tuple(fields)
    return normed


__all__ = [
    "current_socket_factory",
    "encode_hostname",
    "getaddrinfo",
    "getnameinfo",
    "getprotobyname",
    "resolve_address",
    "set_custom_hostname_resolver",
    "set_custom_socket_factory",
]
