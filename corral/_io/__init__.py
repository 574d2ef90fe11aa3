"""The completion core: operation records, ``perform()``, the ring pool and the
backends (io_uring, epoll adapter, fake kernel; IOCP and AFD on Windows).

This package only re-exports. The public names go out through
:mod:`corral.lowlevel` (and :class:`FakeKernel` through :mod:`corral.testing`).
"""

from ._backend import (
    Backend as Backend,
)
from ._backend import (
    BackendStatistics as BackendStatistics,
)
from ._backend import (
    Capabilities as Capabilities,
)
from ._select import BackendUnavailableError as BackendUnavailableError
from .ops import (
    AcceptMultishotOp as AcceptMultishotOp,
)
from .ops import (
    AcceptOp as AcceptOp,
)
from .ops import (
    CancelFdOp as CancelFdOp,
)
from .ops import (
    CloseOp as CloseOp,
)
from .ops import (
    ConnectOp as ConnectOp,
)
from .ops import (
    FsyncOp as FsyncOp,
)
from .ops import (
    NopOp as NopOp,
)
from .ops import (
    OpenatOp as OpenatOp,
)
from .ops import (
    Operation as Operation,
)
from .ops import (
    PollOp as PollOp,
)
from .ops import (
    RawOp as RawOp,
)
from .ops import (
    ReadOp as ReadOp,
)
from .ops import (
    ReadPoolOp as ReadPoolOp,
)
from .ops import (
    ReadvOp as ReadvOp,
)
from .ops import (
    RecvmsgOp as RecvmsgOp,
)
from .ops import (
    RecvMultishotOp as RecvMultishotOp,
)
from .ops import (
    RecvOp as RecvOp,
)
from .ops import (
    RecvPoolOp as RecvPoolOp,
)
from .ops import (
    SendmsgOp as SendmsgOp,
)
from .ops import (
    SendOp as SendOp,
)
from .ops import (
    ShutdownOp as ShutdownOp,
)
from .ops import (
    SpliceOp as SpliceOp,
)
from .ops import (
    StatxOp as StatxOp,
)
from .ops import (
    TimeoutOp as TimeoutOp,
)
from .ops import (
    WriteOp as WriteOp,
)
from .ops import (
    WritevOp as WritevOp,
)
from .perform import (
    cancel_operation as cancel_operation,
)
from .perform import (
    current_backend as current_backend,
)
from .perform import (
    orphan as orphan,
)
from .perform import (
    perform as perform,
)
from .perform import (
    stream as stream,
)
from .pool import (
    BufferCorruptionError as BufferCorruptionError,
)
from .pool import (
    BufferLeakError as BufferLeakError,
)
from .pool import (
    BufferPool as BufferPool,
)
from .pool import (
    Lease as Lease,
)
from .pool import (
    PoolStatistics as PoolStatistics,
)
from .readiness import (
    notify_closing as notify_closing,
)
from .readiness import (
    wait_readable as wait_readable,
)
from .readiness import (
    wait_writable as wait_writable,
)
