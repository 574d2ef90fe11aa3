"""Stream helpers that work over any stream implementation: forceful closing
and stapling two one-way streams into one two-way stream."""

from __future__ import annotations

from typing import Generic, TypeGuard, TypeVar, final

import attrs

from ._abc import AsyncResource, HalfCloseableStream, ReceiveStream, SendStream
from ._core import CancelScope

SendStreamT = TypeVar("SendStreamT", bound=SendStream)
ReceiveStreamT = TypeVar("ReceiveStreamT", bound=ReceiveStream)

__all__ = ["StapledStream", "aclose_forcefully"]


async def aclose_forcefully(resource: AsyncResource) -> None:
    """Close ``resource`` at once, skipping any graceful shutdown.

    Every :class:`corral.abc.AsyncResource` promises that a *cancelled*
    ``aclose`` still closes it, only less politely (no TLS close_notify, no
    flushing). This helper relies on that promise: it calls ``aclose`` inside
    an already-cancelled scope.

    Use it on error paths that must not block: when a stream failed, waiting
    for its graceful close is pointless (:class:`corral.SSLStream` closes its
    transport this way after an error).

    It is a checkpoint (it always yields to the scheduler), but with a
    correctly written resource it cannot block. The ``Cancelled`` raised
    inside is caught by the scope; a cancellation from outside is delivered
    at the caller's next checkpoint.
    """
    with CancelScope() as scope:
        scope.cancel(reason="cancelled during aclose_forcefully")
        await resource.aclose()


def _has_send_eof(stream: SendStream) -> TypeGuard[HalfCloseableStream]:
    # Duck typing on purpose, as Trio: a send stream that is not declared a
    # HalfCloseableStream but has send_eof still gets its half-close used.
    return hasattr(stream, "send_eof")


@final
@attrs.define(eq=False, slots=False)
class StapledStream(HalfCloseableStream, Generic[SendStreamT, ReceiveStreamT]):
    """A two-way stream made of a one-way send stream and a one-way receive
    stream.

    Sending (``send_all``, ``wait_send_all_might_not_block``, ``send_eof``)
    goes to :attr:`send_stream`; ``receive_some`` goes to
    :attr:`receive_stream`. Every call is a plain delegation, so errors,
    checkpoints and cancellation behave as the underlying stream's do.

    Example: an echo stream, whose receive side reads what its send side
    wrote::

        send, receive = corral.testing.memory_stream_one_way_pair()
        echo = corral.StapledStream(send, receive)
        await echo.send_all(b"x")
        assert await echo.receive_some() == b"x"

    Attributes:
      send_stream: the :class:`corral.abc.SendStream` used for sending.
      receive_stream: the :class:`corral.abc.ReceiveStream` used for
          receiving.
    """

    send_stream: SendStreamT
    receive_stream: ReceiveStreamT

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Delegate to ``send_stream.send_all(data)``."""
        return await self.send_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Delegate to ``send_stream.wait_send_all_might_not_block()``."""
        return await self.send_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Close the sending half.

        Calls ``send_stream.send_eof()`` if the send stream has that method,
        otherwise ``send_stream.aclose()`` (closing a one-way send stream is
        how it signals end-of-file).
        """
        stream = self.send_stream
        if _has_send_eof(stream):
            return await stream.send_eof()
        return await stream.aclose()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Delegate to ``receive_stream.receive_some(max_bytes)``."""
        return await self.receive_stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        """Close both streams: the send stream first, then the receive stream
        (which is closed even if closing the send stream raised)."""
        try:
            await self.send_stream.aclose()
        finally:
            await self.receive_stream.aclose()
