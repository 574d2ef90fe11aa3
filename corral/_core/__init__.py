"""The scheduler: tasks, nurseries, cancel scopes, traps, deadlines.

Knows no I/O backend; see ``docs/internals.md`` for the I/O-manager interface.
This package only re-exports.
"""

# Grouped one statement per module for readability; ruff's isort settings
# would split every `X as X` re-export into its own statement.
# ruff: noqa: I001

from ._accessors import (
    current_clock as current_clock,
    current_corral_token as current_corral_token,
    current_effective_deadline as current_effective_deadline,
    current_io_manager as current_io_manager,
    current_root_task as current_root_task,
    current_statistics as current_statistics,
    current_task as current_task,
    current_time as current_time,
    current_trio_token as current_trio_token,
    in_corral_run as in_corral_run,
    in_corral_task as in_corral_task,
    in_trio_run as in_trio_run,
    in_trio_task as in_trio_task,
    reschedule as reschedule,
    spawn_system_task as spawn_system_task,
    wait_all_tasks_blocked as wait_all_tasks_blocked,
)
from ._cancel import CancelScope as CancelScope
from ._clock import SystemClock as SystemClock
from ._entry_queue import (
    CorralToken as CorralToken,
    TrioToken as TrioToken,
)
from ._exceptions import (
    BrokenResourceError as BrokenResourceError,
    BusyResourceError as BusyResourceError,
    Cancelled as Cancelled,
    CancelReasonLiteral as CancelReasonLiteral,
    ClosedResourceError as ClosedResourceError,
    CorralInternalError as CorralInternalError,
    EndOfChannel as EndOfChannel,
    RunFinishedError as RunFinishedError,
    TrioInternalError as TrioInternalError,
    WouldBlock as WouldBlock,
)
from ._guest import start_guest_run as start_guest_run
from ._instrumentation import (
    add_instrument as add_instrument,
    remove_instrument as remove_instrument,
)
from ._io_manager import (
    IOManager as IOManager,
    MinimalIOManager as MinimalIOManager,
)
from ._ki import (
    currently_ki_protected as currently_ki_protected,
    disable_ki_protection as disable_ki_protection,
    enable_ki_protection as enable_ki_protection,
)
from ._local import (
    RunVar as RunVar,
    RunVarToken as RunVarToken,
)
from ._nursery import (
    TASK_STATUS_IGNORED as TASK_STATUS_IGNORED,
    Nursery as Nursery,
    TaskStatus as TaskStatus,
    open_nursery as open_nursery,
)
from ._parking_lot import (
    ParkingLot as ParkingLot,
    ParkingLotStatistics as ParkingLotStatistics,
    add_parking_lot_breaker as add_parking_lot_breaker,
    remove_parking_lot_breaker as remove_parking_lot_breaker,
)
from ._run import (
    RunStatistics as RunStatistics,
    run as run,
)
from ._task import Task as Task
from ._thread_cache import start_thread_soon as start_thread_soon
from ._traps import (
    Abort as Abort,
    RaiseCancelT as RaiseCancelT,
    cancel_shielded_checkpoint as cancel_shielded_checkpoint,
    checkpoint as checkpoint,
    checkpoint_if_cancelled as checkpoint_if_cancelled,
    permanently_detach_coroutine_object as permanently_detach_coroutine_object,
    reattach_detached_coroutine_object as reattach_detached_coroutine_object,
    temporarily_detach_coroutine_object as temporarily_detach_coroutine_object,
    wait_task_rescheduled as wait_task_rescheduled,
)
