"""Call back into a corral run from a thread (Trio's ``trio.from_thread``):
from a thread started by :func:`corral.to_thread.run_sync`, or from any
thread given the run's token."""

from ._threads import (
    from_thread_check_cancelled as check_cancelled,
)
from ._threads import (
    from_thread_run as run,
)
from ._threads import (
    from_thread_run_sync as run_sync,
)

__all__ = ["check_cancelled", "run", "run_sync"]
