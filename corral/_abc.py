"""Abstract base classes: the interfaces corral's resources implement and that
users implement to plug their own resources, clocks and instruments in.

Same classes and meanings as Trio's ``trio.abc``.
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from ._core._exceptions import EndOfChannel

if TYPE_CHECKING:
    from typing import Self

    from ._core._run import Task

T = TypeVar("T")
T_resource = TypeVar("T_resource", bound="AsyncResource", covariant=True)
SendType = TypeVar("SendType", contravariant=True)
ReceiveType = TypeVar("ReceiveType", covariant=True)


class Clock(ABC):
    """The interface for custom run clocks (pass one as ``run(clock=...)``)."""

    __slots__ = ()

    @abstractmethod
    def start_clock(self) -> None:
        """Called once, at the start of the run, before any task runs."""

    @abstractmethod
    def current_time(self) -> float:
        """Return the clock's current time in seconds (arbitrary origin)."""

    @abstractmethod
    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Return how many real seconds the run loop should wait for I/O so
        as to wake no later than clock time ``deadline``. May be negative or
        ``inf``."""


class Instrument(ABC):  # noqa: B024 - every hook is optional by design
    """The interface for run instruments: objects whose hooks the scheduler
    calls at well-defined moments. Implement only the hooks you need; the
    scheduler only calls hooks an instrument defines.

    An instrument whose hook raises is removed and the error logged; the run
    continues.
    """

    __slots__ = ()

    def before_run(self) -> None:
        """Called at the start of :func:`corral.run`."""

    def after_run(self) -> None:
        """Called just before :func:`corral.run` returns."""

    def task_spawned(self, task: Task) -> None:
        """Called when ``task`` is created."""

    def task_scheduled(self, task: Task) -> None:
        """Called when ``task`` becomes runnable."""

    def before_task_step(self, task: Task) -> None:
        """Called just before ``task`` runs one step."""

    def after_task_step(self, task: Task) -> None:
        """Called just after ``task`` ran one step (it yielded or finished)."""

    def task_exited(self, task: Task) -> None:
        """Called when ``task`` has finished."""

    def before_io_wait(self, timeout: float) -> None:
        """Called before the scheduler waits for I/O for up to ``timeout`` s."""

    def after_io_wait(self, timeout: float) -> None:
        """Called after the scheduler's wait for I/O returned."""


class HostnameResolver(ABC):
    """The interface for custom name resolvers
    (:func:`corral.socket.set_custom_hostname_resolver`)."""

    __slots__ = ()

    @abstractmethod
    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[
        tuple[
            socket.AddressFamily,
            socket.SocketKind,
            int,
            str,
            tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
        ]
    ]:
        """Like :func:`socket.getaddrinfo`, but async. ``host`` arrives
        IDNA-encoded (bytes) or ``None``; numeric hosts never reach the
        resolver."""

    @abstractmethod
    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        """Like :func:`socket.getnameinfo`, but async."""


class SocketFactory(ABC):
    """The interface for custom socket factories
    (:func:`corral.socket.set_custom_socket_factory`)."""

    __slots__ = ()

    @abstractmethod
    def socket(
        self,
        family: socket.AddressFamily | int = socket.AF_INET,
        type: socket.SocketKind | int = socket.SOCK_STREAM,
        proto: int = 0,
    ) -> object:
        """Return a new corral socket object, as :func:`corral.socket.socket`
        would."""


class AsyncResource(ABC):
    """A resource that needs closing, and that can be closed gracefully
    (``aclose``, which may do I/O) or forcefully (cancelling ``aclose``).

    Using it as ``async with resource:`` closes it on exit.
    """

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Close the resource.

        Closing is idempotent: closing a closed resource does nothing. If
        ``aclose`` is cancelled, the resource is still closed (forcefully);
        ``Cancelled`` is then raised. Any other use of a closed resource
        raises :exc:`corral.ClosedResourceError`.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class SendStream(AsyncResource):
    """A byte stream you can send on."""

    __slots__ = ()

    @abstractmethod
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting as long as needed.

        Raises :exc:`corral.BusyResourceError` if another task is already in
        ``send_all`` or ``wait_send_all_might_not_block`` on this stream,
        :exc:`corral.BrokenResourceError` if the stream broke and
        :exc:`corral.ClosedResourceError` if you closed it.

        Cancelled part-way, an unknown prefix of ``data`` may have been sent:
        the stream is then broken for further sends.
        """

    @abstractmethod
    async def wait_send_all_might_not_block(self) -> None:
        """Wait until a ``send_all`` call might not block. A hint only: it
        may return early or spuriously."""


class ReceiveStream(AsyncResource):
    """A byte stream you can receive from. Async-iterating it yields chunks
    until end-of-file."""

    __slots__ = ()

    @abstractmethod
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Wait for data and return between 1 and ``max_bytes`` bytes of it
        (any amount if ``max_bytes`` is None), or ``b""`` at end-of-file."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes | bytearray:
        data = await self.receive_some()
        if not data:
            raise StopAsyncIteration
        return data


class Stream(SendStream, ReceiveStream):
    """A bidirectional byte stream."""

    __slots__ = ()


class HalfCloseableStream(Stream):
    """A stream whose sending half can be closed alone (``send_eof``)."""

    __slots__ = ()

    @abstractmethod
    async def send_eof(self) -> None:
        """Close the sending half: the peer sees end-of-file after the data
        already sent. Receiving keeps working."""


class Listener(AsyncResource, Generic[T_resource]):
    """Something that accepts incoming connections as resources."""

    __slots__ = ()

    @abstractmethod
    async def accept(self) -> T_resource:
        """Wait for and return the next incoming connection."""


class SendChannel(AsyncResource, Generic[SendType]):
    """The sending end of a channel of Python objects."""

    __slots__ = ()

    @abstractmethod
    async def send(self, value: SendType) -> None:
        """Send ``value``, waiting if the channel is full.

        Raises :exc:`corral.BrokenResourceError` if every receiver is closed
        and :exc:`corral.ClosedResourceError` if this end is closed."""


class ReceiveChannel(AsyncResource, Generic[ReceiveType]):
    """The receiving end of a channel of Python objects. Async-iterating it
    yields values until the channel ends."""

    __slots__ = ()

    @abstractmethod
    async def receive(self) -> ReceiveType:
        """Wait for and return the next value.

        Raises :exc:`corral.EndOfChannel` when every sender is closed and
        the buffer is empty, :exc:`corral.ClosedResourceError` if this end
        is closed."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ReceiveType:
        try:
            return await self.receive()
        except EndOfChannel:
            raise StopAsyncIteration from None


class Channel(SendChannel[T], ReceiveChannel[T]):
    """A channel you can both send on and receive from."""

    __slots__ = ()
