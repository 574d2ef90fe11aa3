"""Low-level tools for building new primitives on corral (Trio's
``trio.lowlevel``).

This module only re-exports; each name's home is given in ``docs/internals.md``.
corral spells Trio's ``TrioToken``/``current_trio_token``/``in_trio_run``/
``in_trio_task`` with its own name; the Trio spellings are aliases.
"""

from __future__ import annotations

# --- core (corral/_core) -------------------------------------------------
from ._core import (
    Abort as Abort,
)
from ._core import (
    CorralToken as CorralToken,
)
from ._core import (
    ParkingLot as ParkingLot,
)
from ._core import (
    ParkingLotStatistics as ParkingLotStatistics,
)
from ._core import (
    RaiseCancelT as RaiseCancelT,
)
from ._core import (
    RunStatistics as RunStatistics,
)
from ._core import (
    RunVar as RunVar,
)
from ._core import (
    RunVarToken as RunVarToken,
)
from ._core import (
    Task as Task,
)
from ._core import (
    TrioToken as TrioToken,
)
from ._core import (
    add_instrument as add_instrument,
)
from ._core import (
    add_parking_lot_breaker as add_parking_lot_breaker,
)
from ._core import (
    cancel_shielded_checkpoint as cancel_shielded_checkpoint,
)
from ._core import (
    checkpoint as checkpoint,
)
from ._core import (
    checkpoint_if_cancelled as checkpoint_if_cancelled,
)
from ._core import (
    current_clock as current_clock,
)
from ._core import (
    current_corral_token as current_corral_token,
)
from ._core import (
    current_root_task as current_root_task,
)
from ._core import (
    current_statistics as current_statistics,
)
from ._core import (
    current_task as current_task,
)
from ._core import (
    current_trio_token as current_trio_token,
)
from ._core import (
    currently_ki_protected as currently_ki_protected,
)
from ._core import (
    disable_ki_protection as disable_ki_protection,
)
from ._core import (
    enable_ki_protection as enable_ki_protection,
)
from ._core import (
    in_corral_run as in_corral_run,
)
from ._core import (
    in_corral_task as in_corral_task,
)
from ._core import (
    in_trio_run as in_trio_run,
)
from ._core import (
    in_trio_task as in_trio_task,
)
from ._core import (
    permanently_detach_coroutine_object as permanently_detach_coroutine_object,
)
from ._core import (
    reattach_detached_coroutine_object as reattach_detached_coroutine_object,
)
from ._core import (
    remove_instrument as remove_instrument,
)
from ._core import (
    remove_parking_lot_breaker as remove_parking_lot_breaker,
)
from ._core import (
    reschedule as reschedule,
)
from ._core import (
    spawn_system_task as spawn_system_task,
    start_guest_run as start_guest_run,
)
from ._core import (
    start_thread_soon as start_thread_soon,
)
from ._core import (
    temporarily_detach_coroutine_object as temporarily_detach_coroutine_object,
)
from ._core import (
    wait_task_rescheduled as wait_task_rescheduled,
)

# --- completion core (corral/_io) ------------------------------------------
from ._io import (
    AcceptMultishotOp as AcceptMultishotOp,
    AcceptOp as AcceptOp,
    Backend as Backend,
    BackendStatistics as BackendStatistics,
    BackendUnavailableError as BackendUnavailableError,
    BufferCorruptionError as BufferCorruptionError,
    BufferLeakError as BufferLeakError,
    BufferPool as BufferPool,
    CancelFdOp as CancelFdOp,
    Capabilities as Capabilities,
    CloseOp as CloseOp,
    ConnectOp as ConnectOp,
    FsyncOp as FsyncOp,
    Lease as Lease,
    NopOp as NopOp,
    OpenatOp as OpenatOp,
    Operation as Operation,
    PollOp as PollOp,
    PoolStatistics as PoolStatistics,
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
    cancel_operation as cancel_operation,
    current_backend as current_backend,
    notify_closing as notify_closing,
    orphan as orphan,
    perform as perform,
    stream as stream,
    wait_readable as wait_readable,
    wait_writable as wait_writable,
)

# --- sockets (corral/_socket_resolve.py) ---------------------------------
from ._socket_resolve import encode_hostname as encode_hostname

# --- end of sections -----------------------------------------------------
from ._util import fixup_module_metadata as _fixup_module_metadata

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
