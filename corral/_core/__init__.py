"""The scheduler: tasks, nurseries, cancel scopes, traps, deadlines.

Knows no I/O backend; see ``docs/internals.md`` for the I/O-manager interface.
This package only re-exports.
"""

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
from ._thread_cache import start_thread_soon as start_thread_soon
