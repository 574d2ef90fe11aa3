"""corral: structured concurrency in the style of Trio, on completion-based I/O.

This module only re-exports; each name's home is given in ``docs/internals.md``.
A Trio program runs on corral after ``import corral as trio``.
"""

from __future__ import annotations

# --- core (corral/_core) -------------------------------------------------
from ._core._exceptions import (
    BrokenResourceError as BrokenResourceError,
    BusyResourceError as BusyResourceError,
    Cancelled as Cancelled,
    ClosedResourceError as ClosedResourceError,
    CorralInternalError as CorralInternalError,
    EndOfChannel as EndOfChannel,
    RunFinishedError as RunFinishedError,
    TrioInternalError as TrioInternalError,
    WouldBlock as WouldBlock,
)
from ._core import (
    TASK_STATUS_IGNORED as TASK_STATUS_IGNORED,
    CancelScope as CancelScope,
    Nursery as Nursery,
    TaskStatus as TaskStatus,
    current_effective_deadline as current_effective_deadline,
    current_time as current_time,
    open_nursery as open_nursery,
)
from ._run_entry import run as run  # corral/_run_entry.py: backend selection (completion core)
from ._timeouts import (
    TooSlowError as TooSlowError,
    fail_after as fail_after,
    fail_at as fail_at,
    move_on_after as move_on_after,
    move_on_at as move_on_at,
    sleep as sleep,
    sleep_forever as sleep_forever,
    sleep_until as sleep_until,
)
from . import lowlevel as lowlevel

# --- sync, channels, threads (corral/_sync.py, _channel.py, _threads.py) ---
from ._sync import (
    CapacityLimiter as CapacityLimiter,
    CapacityLimiterStatistics as CapacityLimiterStatistics,
    Condition as Condition,
    ConditionStatistics as ConditionStatistics,
    Event as Event,
    EventStatistics as EventStatistics,
    Lock as Lock,
    LockStatistics as LockStatistics,
    Semaphore as Semaphore,
    StrictFIFOLock as StrictFIFOLock,
)
from ._channel import (
    MemoryChannelStatistics as MemoryChannelStatistics,
    MemoryReceiveChannel as MemoryReceiveChannel,
    MemorySendChannel as MemorySendChannel,
    as_safe_channel as as_safe_channel,
    open_memory_channel as open_memory_channel,
)
from . import from_thread as from_thread, to_thread as to_thread

# --- generic streams, serve_listeners, TLS (corral/_highlevel_generic.py,
# _highlevel_serve_listeners.py, _ssl.py) ---
from ._highlevel_generic import (
    StapledStream as StapledStream,
    aclose_forcefully as aclose_forcefully,
)
from ._highlevel_serve_listeners import serve_listeners as serve_listeners
from ._ssl import (
    NeedHandshakeError as NeedHandshakeError,
    SSLListener as SSLListener,
    SSLStream as SSLStream,
)

# --- sockets (corral/_socket.py, corral/socket.py) ----------------------
from . import socket as socket

# --- high-level networking (corral/_highlevel_socket.py,
# _highlevel_open_tcp_listeners.py, _highlevel_open_unix_stream.py,
# _highlevel_open_tcp_stream.py, _highlevel_ssl_helpers.py) ---
from ._highlevel_socket import (
    SocketListener as SocketListener,
    SocketStream as SocketStream,
)
from ._highlevel_open_tcp_listeners import (
    open_tcp_listeners as open_tcp_listeners,
    serve_tcp as serve_tcp,
)
from ._highlevel_open_unix_stream import open_unix_socket as open_unix_socket
from ._highlevel_open_tcp_stream import open_tcp_stream as open_tcp_stream
from ._highlevel_ssl_helpers import (
    open_ssl_over_tcp_listeners as open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream as open_ssl_over_tcp_stream,
    serve_ssl_over_tcp as serve_ssl_over_tcp,
)

# --- files (corral/_file_io.py, _file_binary.py, _file_text.py, _path.py) ---
from ._file_io import open_file as open_file, wrap_file as wrap_file
from ._path import Path as Path, PosixPath as PosixPath, WindowsPath as WindowsPath

# --- end of sections -----------------------------------------------------
from . import abc as abc
from ._util import fixup_module_metadata as _fixup_module_metadata

__version__ = "0.1.0.dev0"

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
