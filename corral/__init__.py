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

# --- end of sections -----------------------------------------------------
from . import abc as abc
from ._util import fixup_module_metadata as _fixup_module_metadata

__version__ = "0.1.0.dev0"

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
