"""TLS over any corral stream: SSLStream and SSLListener.

How it works
============

The standard library's :class:`ssl.SSLObject` is a TLS state machine that
does no I/O of its own: it reads ciphertext from an *incoming* memory BIO and
appends ciphertext to an *outgoing* one. Its four operations
(``do_handshake``, ``read``, ``write``, ``unwrap`` -- the last is
SSL_shutdown, i.e. "send close_notify, then wait for the peer's") follow one
rule: each may append to the outgoing BIO, may consume from the incoming BIO,
and either completes or raises :exc:`ssl.SSLWantReadError` ("I need more
bytes from the peer; call me again"). Appending to a memory BIO always
succeeds, so SSLWantWriteError never happens here.

Retrying a failed call must repeat *the same call with the same data*:
OpenSSL may already have committed part of a ``write`` to its output and will
skip it next time. Calling other operations in between is fine.

A single operation may need both directions: a handshake takes several round
trips, and in TLS 1.2 and earlier a peer may renegotiate at any time, so a
``read`` may need to send and a ``write`` may need to receive. Python's
``ssl`` module cannot *start* a renegotiation (and TLS 1.3 has none), but a
peer's is handled inside OpenSSL by these same retries.

:meth:`SSLStream._retry` turns one such non-blocking call into an awaitable
one: call it, ship whatever it put in the outgoing BIO, or feed the incoming
BIO if it wants to read, and repeat until it completes. Since one task may be
sending while another receives (full duplex), and either may end up needing
the transport's send *or* receive side, access to the transport goes through
two internal locks, never exposed to the caller as BusyResourceError:

- ciphertext must reach the wire in the order it left the outgoing BIO, so
  the send lock is a :class:`corral.StrictFIFOLock` and a task queues on it
  *immediately* after reading the BIO, with no await in between;
- when several tasks want to read, one transport ``receive_some`` serves all
  of them: a counter tells a task that got the receive lock whether someone
  else received while it waited, in which case it retries the TLS call
  instead of receiving again (which could wait forever for data that will
  never come).

Cancellation: cancelling a call while ciphertext is half sent leaves the TLS
session in an unknown state; the stream is then *broken* and every later
operation raises :exc:`corral.BrokenResourceError` (closing still works).
"""

from __future__ import annotations

import contextlib
import operator
import ssl as _stdlib_ssl
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar, cast, final

from ._abc import Listener, Stream
from ._core import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
)
from ._highlevel_generic import aclose_forcefully
from ._socket_resolve import encode_hostname
from ._sync import Event, Lock, StrictFIFOLock
from ._util import ConflictDetector

__all__ = ["NeedHandshakeError", "SSLListener", "SSLStream"]

T = TypeVar("T")
T_Stream = TypeVar("T_Stream", bound=Stream)

# receive_some() without max_bytes has to choose how much plaintext to ask
# SSLObject.read for before knowing how much ciphertext the transport will
# deliver. We use the largest transport chunk seen so far (ciphertext is a
# little larger than its plaintext, so that slightly over-asks, which is what
# we want) and start from a value above a typical first TCP burst: 10
# segments of ~1460 bytes (RFC 6928's initial window).
STARTING_RECEIVE_SIZE = 16384


def _is_eof(exc: BaseException | None) -> bool:
    # A transport EOF without close_notify. Some Python/OpenSSL combinations
    # report it as a plain SSLError whose text names the condition rather
    # than as SSLEOFError, so check both.
    return isinstance(exc, _stdlib_ssl.SSLEOFError) or (
        "UNEXPECTED_EOF_WHILE_READING" in str(getattr(exc, "strerror", ""))
    )


class NeedHandshakeError(Exception):
    """Raised by :class:`SSLStream` methods that have nothing meaningful to
    return before the TLS handshake completed (``getpeercert``,
    ``selected_alpn_protocol``, ``cipher``...). Call
    :meth:`SSLStream.do_handshake` first."""


class _Once:
    """Run an async function at most once; concurrent and later callers wait
    for that one run to finish."""

    __slots__ = ("_afn", "_finished", "_succeeded", "started")

    def __init__(self, afn: Callable[[], Any]) -> None:
        self._afn = afn
        self.started = False
        self._succeeded = False
        self._finished = Event()

    async def ensure(self, *, checkpoint: bool) -> None:
        """Run the function if nobody has, else wait for the run to finish.
        Once it succeeded, returns at once, without a checkpoint unless
        ``checkpoint`` is true."""
        if not self.started:
            self.started = True
            try:
                await self._afn()
                self._succeeded = True
            finally:
                # Also on failure: waiters must not hang on a handshake that
                # will never finish. They find the stream broken.
                self._finished.set()
        elif not checkpoint and self._succeeded:
            return
        else:
            await self._finished.wait()

    @property
    def done(self) -> bool:
        return self._succeeded


class _State(Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


@final
class SSLStream(Stream, Generic[T_Stream]):
    r"""A TLS-encrypted :class:`corral.abc.Stream` over any other stream.

    ``send_all`` encrypts and sends the ciphertext on the transport stream;
    ``receive_some`` receives ciphertext from it and returns plaintext. The
    handshake happens by itself on first use, or explicitly with
    :meth:`do_handshake`.

    Args:
      transport_stream: the :class:`corral.abc.Stream` carrying the
          ciphertext (a :class:`corral.SocketStream`, a memory stream, even
          another SSLStream).
      ssl_context: the :class:`ssl.SSLContext` of the connection, usually
          from :func:`ssl.create_default_context`.
      server_hostname: the server's name, for SNI and certificate checking.
          Required for clients whose context has ``check_hostname``.
          A non-ASCII ``str`` is encoded with IDNA 2008, as corral's
          resolver does.
      server_side: act as the server (default: client).
      https_compatible: whether to skip TLS's ``close_notify``. By default
          (False) corral follows the standard: :meth:`aclose` sends a
          close_notify, and a transport EOF that arrives without one is a
          possible truncation attack, reported as
          :exc:`corral.BrokenResourceError`. HTTPS implementations in the
          wild routinely skip close_notify (HTTP frames its own messages),
          so with True corral neither sends one nor requires one: an EOF is
          a clean end-of-file. (:class:`ssl.SSLSocket` behaves like True.)

    Attributes:
      transport_stream: the stream passed in (None after :meth:`unwrap`).

    The :class:`ssl.SSLObject` attributes ``context``, ``server_side``,
    ``server_hostname``, ``session``, ``session_reused``, ``getpeercert``,
    ``selected_npn_protocol``, ``cipher``, ``shared_ciphers``,
    ``compression``, ``pending``, ``get_channel_binding``,
    ``selected_alpn_protocol`` and ``version`` are available on the stream
    (setting ``context`` or ``session`` sets them on the SSLObject). Those
    that describe the negotiated connection raise :exc:`NeedHandshakeError`
    before the handshake, where SSLObject would return None. An SNI callback
    receives the SSLObject, not the SSLStream.

    Errors: a TLS failure (bad certificate, protocol error, truncation)
    raises :exc:`corral.BrokenResourceError` with the :class:`ssl.SSLError`
    as ``__cause__``, and breaks the stream. Two tasks in ``send_all`` /
    ``wait_send_all_might_not_block`` at once, or two in ``receive_some``,
    raise :exc:`corral.BusyResourceError`; one sender and one receiver at
    once is fine (full duplex).

    Cancellation: cancelling a handshake, ``send_all``, or a ``receive_some``
    that was handshaking may leave the TLS session unusable; the stream is
    then broken and later calls raise :exc:`corral.BrokenResourceError`.
    """

    # SSLObject attributes forwarded by __getattr__ / __setattr__.
    _forwarded: ClassVar[frozenset[str]] = frozenset(
        {
            "context",
            "server_side",
            "server_hostname",
            "session",
            "session_reused",
            "getpeercert",
            "selected_npn_protocol",
            "cipher",
            "shared_ciphers",
            "compression",
            "pending",
            "get_channel_binding",
            "selected_alpn_protocol",
            "version",
        }
    )
    # ...of which these mean nothing before the handshake.
    _after_handshake: ClassVar[frozenset[str]] = frozenset(
        {
            "session_reused",
            "getpeercert",
            "selected_npn_protocol",
            "cipher",
            "shared_ciphers",
            "compression",
            "get_channel_binding",
            "selected_alpn_protocol",
            "version",
        }
    )

    def __init__(
        self,
        transport_stream: T_Stream,
        ssl_context: _stdlib_ssl.SSLContext,
        *,
        server_hostname: str | bytes | None = None,
        server_side: bool = False,
        https_compatible: bool = False,
    ) -> None:
        if isinstance(server_hostname, str):
            server_hostname = encode_hostname(server_hostname)
        self.transport_stream: T_Stream = transport_stream
        self._state = _State.OK
        self._https_compatible = https_compatible
        self._incoming = _stdlib_ssl.MemoryBIO()
        self._outgoing = _stdlib_ssl.MemoryBIO()
        # Server-side TLS 1.3 session tickets held back until our first
        # send (see _retry).
        self._delayed_outgoing: bytes | None = None
        self._ssl_object = ssl_context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._handshook = _Once(self._do_handshake)
        # Internal access to the transport (see the module docstring).
        self._inner_send_lock = StrictFIFOLock()
        self._inner_recv_lock = Lock()
        self._inner_recv_count = 0
        # Misuse by our caller.
        self._outer_send_conflict_detector = ConflictDetector(
            "another task is currently sending data on this SSLStream"
        )
        self._outer_recv_conflict_detector = ConflictDetector(
            "another task is currently receiving data on this SSLStream"
        )
        self._estimated_receive_size = STARTING_RECEIVE_SIZE

    def __getattr__(self, name: str) -> Any:
        if name in self._forwarded:
            if name in self._after_handshake and not self._handshook.done:
                raise NeedHandshakeError(f"call do_handshake() before calling {name!r}")
            return getattr(self._ssl_object, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: object) -> None:
        if name in self._forwarded:
            setattr(self._ssl_object, name, value)
        else:
            super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._forwarded]

    def _check_status(self) -> None:
        if self._state is _State.BROKEN:
            raise BrokenResourceError
        if self._state is _State.CLOSED:
            raise ClosedResourceError

    async def _retry(
        self,
        fn: Callable[..., T],
        *args: object,
        ignore_want_read: bool = False,
        is_handshake: bool = False,
    ) -> T | None:
        """Drive the SSLObject call ``fn(*args)`` to completion, moving
        ciphertext between the BIOs and the transport. Always a checkpoint.

        ``ignore_want_read``: treat SSLWantReadError as completion (aclose
        sends its close_notify without waiting for the peer's).
        """
        await checkpoint_if_cancelled()
        yielded = False
        finished = False
        result: T | None = None
        while not finished:
            # Each turn: touch the SSLObject without yielding (it is shared
            # with other tasks), then await exactly one thing that makes
            # progress, then look again. Yielding between the two would let
            # another task overtake us on the wire.
            want_read = False
            try:
                result = fn(*args)
            except _stdlib_ssl.SSLWantReadError:
                want_read = True
            except (_stdlib_ssl.SSLError, _stdlib_ssl.CertificateError) as exc:
                self._state = _State.BROKEN
                raise BrokenResourceError from exc
            else:
                finished = True
            if ignore_want_read:
                want_read = False
                finished = True
            to_send = self._outgoing.read()

            # OpenSSL (up to at least 1.1.1c; openssl/openssl#7948, #7967)
            # sends TLS 1.3 session tickets from the server's do_handshake,
            # when the client may not be reading: over a lockstep or
            # otherwise unbuffered transport that deadlocks. Hold them back
            # and send them in front of our first real data instead.
            if (
                is_handshake
                and not want_read
                and self._ssl_object.server_side
                and self._ssl_object.version() == "TLSv1.3"
            ):
                self._delayed_outgoing = to_send
                to_send = b""

            # If we must both send and receive, only send this turn: once we
            # yield, another task may receive what we were waiting for, and
            # receiving again could wait forever. Sending comes first
            # because its order on the wire matters and the FIFO lock keeps
            # our place in line.
            if to_send:
                async with self._inner_send_lock:
                    yielded = True
                    try:
                        if self._delayed_outgoing is not None:
                            to_send = self._delayed_outgoing + to_send
                            self._delayed_outgoing = None
                        await self.transport_stream.send_all(to_send)
                    except BaseException:
                        # An unknown prefix of the ciphertext went out; the
                        # session cannot continue.
                        self._state = _State.BROKEN
                        raise
            elif want_read:
                seen = self._inner_recv_count
                async with self._inner_recv_lock:
                    yielded = True
                    if seen == self._inner_recv_count:
                        data = await self.transport_stream.receive_some()
                        if data:
                            self._estimated_receive_size = max(
                                self._estimated_receive_size, len(data)
                            )
                            self._incoming.write(data)
                        else:
                            self._incoming.write_eof()
                        self._inner_recv_count += 1
                    # else: another task received while we waited for the
                    # lock; retry the TLS call with what it brought.
        if not yielded:
            # Completed from buffered data: still a schedule point, but the
            # work is done, so a cancellation must not discard its result.
            await cancel_shielded_checkpoint()
        return result

    async def _do_handshake(self) -> None:
        try:
            await self._retry(self._ssl_object.do_handshake, is_handshake=True)
        except BaseException:
            self._state = _State.BROKEN
            raise

    async def do_handshake(self) -> None:
        """Make sure the TLS handshake has completed, performing it if needed.

        Optional: the first ``send_all`` / ``receive_some`` handshakes by
        themselves. Call it to inspect the peer (``getpeercert()``,
        ``selected_alpn_protocol()``) before exchanging data. If another
        task is handshaking, waits for it; if the handshake is done, only
        checkpoints.

        Raises:
          corral.BrokenResourceError: the handshake failed (``__cause__``
              says why), or the stream is broken.
          corral.ClosedResourceError: the stream is closed.

        Cancelling it mid-handshake breaks the stream.
        """
        self._check_status()
        await self._handshook.ensure(checkpoint=True)
        # Woken after another task's handshake failed: report it.
        self._check_status()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive and decrypt some data (handshaking first if needed).

        Returns between 1 and ``max_bytes`` bytes, or ``b""`` once the peer
        closed the TLS session (close_notify; with ``https_compatible``, any
        transport EOF).

        Raises:
          corral.BrokenResourceError: TLS error, or EOF without close_notify
              when not ``https_compatible``, or the stream is broken.
          corral.ClosedResourceError: the stream is closed.
          corral.BusyResourceError: another task is receiving.
          ValueError: ``max_bytes`` < 1.

        Cancelling it during a handshake breaks the stream.
        """
        with self._outer_recv_conflict_detector:
            self._check_status()
            try:
                await self._handshook.ensure(checkpoint=False)
                self._check_status()
            except BrokenResourceError as exc:
                # An EOF instead of a handshake. OpenSSL reports it as
                # SSLSyscallError on some systems, SSLEOFError on others.
                if self._https_compatible and (
                    isinstance(exc.__cause__, _stdlib_ssl.SSLSyscallError)
                    or _is_eof(exc.__cause__)
                ):
                    await checkpoint()
                    return b""
                raise
            if max_bytes is None:
                # More ciphertext may already be buffered than our estimate;
                # take it all in this call.
                max_bytes = max(self._estimated_receive_size, self._incoming.pending)
            else:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            try:
                received = await self._retry(self._ssl_object.read, max_bytes)
            except BrokenResourceError as exc:
                # The stream stays BROKEN, which is fine: after an EOF the
                # only thing left to do is close it, and closing ignores it.
                if self._https_compatible and _is_eof(exc.__cause__):
                    await checkpoint()
                    return b""
                raise
            assert received is not None
            return received

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it (handshaking first if needed).

        Raises:
          corral.BrokenResourceError: TLS or transport failure, or the
              stream is broken.
          corral.ClosedResourceError: the stream is closed.
          corral.BusyResourceError: another task is in ``send_all`` or
              ``wait_send_all_might_not_block``.

        Cancelling it may break the stream (part of a TLS record sent).
        """
        with self._outer_send_conflict_detector:
            self._check_status()
            await self._handshook.ensure(checkpoint=False)
            self._check_status()
            if not data:
                # SSLObject.write(b"") would mean EOF; for a stream, sending
                # nothing means nothing.
                await checkpoint()
                return
            await self._retry(self._ssl_object.write, data)

    async def unwrap(self) -> tuple[Stream, bytes | bytearray]:
        """End TLS on this connection and go back to cleartext on the
        transport: send close_notify and wait for the peer's.

        Returns:
          ``(transport_stream, trailing_bytes)``. ``trailing_bytes`` are
          cleartext bytes the peer sent after its close_notify that we
          already read from the transport; treat them as the first result
          of ``transport_stream.receive_some()``. Afterwards this SSLStream
          is closed and its ``transport_stream`` is None.

        Raises:
          corral.BusyResourceError: another task is sending or receiving.
          corral.BrokenResourceError / corral.ClosedResourceError: as the
              other methods.
        """
        with self._outer_recv_conflict_detector, self._outer_send_conflict_detector:
            self._check_status()
            await self._handshook.ensure(checkpoint=False)
            self._check_status()
            await self._retry(self._ssl_object.unwrap)
            transport_stream = self.transport_stream
            self._state = _State.CLOSED
            # Nothing may use it through us any more.
            self.transport_stream = cast("T_Stream", None)
            return transport_stream, self._incoming.read()

    async def aclose(self) -> None:
        """Close the TLS session and the transport stream.

        Unless ``https_compatible``, first sends close_notify (handshaking
        first if no handshake happened: nothing can be signed before), but
        does not wait for the peer's reply, which the TLS specifications
        allow: a peer busy sending could otherwise keep us waiting forever.
        A peer that already closed (BrokenResourceError while sending
        close_notify) or a concurrent send or receive in progress
        (BusyResourceError) only makes the close unclean, not an error.

        Closing a closed stream only checkpoints; a broken stream just
        closes its transport. If anything else fails, or ``aclose`` is
        cancelled, the transport is closed with
        :func:`corral.aclose_forcefully` and the error is raised; the
        stream is closed either way.
        """
        if self._state is _State.CLOSED:
            await checkpoint()
            return
        if self._state is _State.BROKEN or self._https_compatible:
            self._state = _State.CLOSED
            await self.transport_stream.aclose()
            return
        try:
            await self._handshook.ensure(checkpoint=False)
            # If another task's handshake failed while we waited, the stream
            # is broken: close it like one, without close_notify.
            if self._state is _State.OK:
                # SSLObject.unwrap sends close_notify, then at once tries to
                # read the peer's and raises SSLWantReadError: ignoring that
                # is exactly "send, don't wait".
                with contextlib.suppress(BrokenResourceError, BusyResourceError):
                    await self._retry(self._ssl_object.unwrap, ignore_want_read=True)
        except BaseException:
            await aclose_forcefully(self.transport_stream)
            raise
        else:
            await self.transport_stream.aclose()
        finally:
            self._state = _State.CLOSED

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport might accept data without blocking
        (see :meth:`corral.abc.SendStream.wait_send_all_might_not_block`).

        Raises BusyResourceError if another task is in ``send_all`` or
        ``wait_send_all_might_not_block``.
        """
        # The outer detector: this conflicts with our caller's send_all.
        with self._outer_send_conflict_detector:
            self._check_status()
            # The inner lock: a concurrent receive_some may be sending
            # handshake data on the transport. Waiting for it is right (our
            # caller did nothing wrong), and a send_all could not have
            # completed before it anyway. Returning when the transport is
            # writable may be early if a receive_some writes right after;
            # this method only promises not to return late.
            async with self._inner_send_lock:
                await self.transport_stream.wait_send_all_might_not_block()


@final
class SSLListener(Listener[SSLStream[T_Stream]]):
    """A :class:`corral.abc.Listener` whose connections are TLS: wraps each
    connection accepted by ``transport_listener`` in a server-side
    :class:`SSLStream`. The handshake is not done by ``accept``; it happens
    on the stream's first use (or :meth:`SSLStream.do_handshake`), so a slow
    client cannot stall the accept loop.

    Args:
      transport_listener: the listener of the underlying connections.
      ssl_context: the server's :class:`ssl.SSLContext`.
      https_compatible: passed to each :class:`SSLStream`.

    Attributes:
      transport_listener: the listener passed in.
    """

    def __init__(
        self,
        transport_listener: Listener[T_Stream],
        ssl_context: _stdlib_ssl.SSLContext,
        *,
        https_compatible: bool = False,
    ) -> None:
        self.transport_listener = transport_listener
        self._ssl_context = ssl_context
        self._https_compatible = https_compatible

    async def accept(self) -> SSLStream[T_Stream]:
        """Accept a connection and return it wrapped in a server-side
        :class:`SSLStream`. Errors and cancellation are those of the
        transport listener's ``accept``."""
        transport_stream = await self.transport_listener.accept()
        return SSLStream(
            transport_stream,
            self._ssl_context,
            server_side=True,
            https_compatible=self._https_compatible,
        )

    async def aclose(self) -> None:
        """Close the transport listener."""
        await self.transport_listener.aclose()
