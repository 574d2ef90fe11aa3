"""Abstract base classes for corral's pluggable interfaces (Trio's ``trio.abc``)."""

from ._abc import (
    AsyncResource as AsyncResource,
    Channel as Channel,
    Clock as Clock,
    HalfCloseableStream as HalfCloseableStream,
    HostnameResolver as HostnameResolver,
    Instrument as Instrument,
    Listener as Listener,
    ReceiveChannel as ReceiveChannel,
    ReceiveStream as ReceiveStream,
    SendChannel as SendChannel,
    SendStream as SendStream,
    SocketFactory as SocketFactory,
    Stream as Stream,
)

__all__ = [
    "AsyncResource", "Channel", "Clock", "HalfCloseableStream", "HostnameResolver",
    "Instrument", "Listener", "ReceiveChannel", "ReceiveStream", "SendChannel",
    "SendStream", "SocketFactory", "Stream",
]

from ._util import fixup_module_metadata as _fixup_module_metadata

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
