"""The completion core: operation records, ``perform()``, the ring pool and the
backends (io_uring, epoll adapter, fake kernel; IOCP and AFD on Windows).

This package only re-exports. The public names go out through
:mod:`corral.lowlevel` (and :class:`FakeKernel` through :mod:`corral.testing`).
"""

from ._backend import (
    Backend as Backend,
    BackendStatistics as BackendStatistics,
    Capabilities as Capabilities,
)
from ._select import BackendUnavailableError as BackendUnavailableError
from .ops import (
    AcceptMultishotOp as AcceptMultishotOp,
    AcceptOp as AcceptOp,
    CancelFdOp as CancelFdOp,
    CloseOp as CloseOp,
    ConnectOp as ConnectOp,
    FsyncOp as FsyncOp,
    NopOp as NopOp,
    OpenatOp as OpenatOp,
    Operation as Operation,
    PollOp as PollOp,
    RawOp as RawOp,
    ReadOp as ReadOp,
    ReadPoolOp as ReadPoolOp,
    ReadvOp as ReadvOp,
    RecvmsgOp as RecvmsgOp,
    RecvMultishotOp as RecvMultishotOp,
    RecvOp as RecvOp,
    RecvPoolOp as RecvPoolOp,
    SendmsgOp as SendmsgOp,
    SendOp as SendOp,
    ShutdownOp as ShutdownOp,
    SpliceOp as SpliceOp,
    StatxOp as StatxOp,
    TimeoutOp as TimeoutOp,
    WriteOp as WriteOp,
    WritevOp as WritevOp,
)
from .perform import (
    cancel_operation as cancel_operation,
    current_backend as current_backend,
    orphan as orphan,
    perform as perform,
    stream as stream,
)
from .pool import (
    BufferCorruptionError as BufferCorruptionError,
    BufferLeakError as BufferLeakError,
    BufferPool as BufferPool,
    Lease as Lease,
    PoolStatistics as PoolStatistics,
)
from .readiness import (
    notify_closing as notify_closing,
    wait_readable as wait_readable,
    wait_writable as wait_writable,
)
