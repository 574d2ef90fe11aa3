"""KeyboardInterrupt protection.

Protection is a property of *code*, not of calls: :func:`enable_ki_protection`
records the decorated function's code object in a table and returns the
function unchanged, so a protected call costs nothing. Only when SIGINT
arrives does the handler walk the interrupted frame stack: the innermost
frame whose code is in the table decides; reaching a task's bottom frame,
the task's own flag decides (system tasks are protected); ``__del__`` methods
are always protected; code outside any run is unprotected.

When protection is on (or the run restricts KeyboardInterrupt to
checkpoints), the handler does not raise: it tells the runner, which
delivers KeyboardInterrupt to the main task at its next checkpoint (or
wakes it if it is blocked).
"""

from __future__ import annotations

import signal
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

from ._run_context import GLOBAL_RUN_CONTEXT


class _SupportsCode(Protocol):
    __code__: types.CodeType


_F = TypeVar("_F", bound=_SupportsCode)

# Keyed by code object identity; weak so that code objects of discarded
# functions (lambdas, closures built per call) are not kept alive. CodeType
# hashes by value, so two distinct code objects that compare equal would
# collide in a plain WeakKeyDictionary; key by id() and keep a weakref with a
# cleanup callback instead.
_PROTECTION: dict[int, tuple[weakref.ref[types.CodeType], bool]] = {}


def _set_protection(code: types.CodeType, enabled: bool) -> None:
    key = id(code)

    def _forget(_: object, key: int = key) -> None:
        entry = _PROTECTION.get(key)
        if entry is not None and entry[0]() is None:
            del _PROTECTION[key]

    _PROTECTION[key] = (weakref.ref(code, _forget), enabled)


def _lookup(code: types.CodeType) -> bool | None:
    entry = _PROTECTION.get(id(code))
    if entry is None or entry[0]() is not code:
        return None
    return entry[1]


def _unwrap_legacy_asyncgen(f: _SupportsCode) -> _SupportsCode:
    # async_generator's @async_generator marks its wrapper like this.
    if getattr(f, "_async_gen_function", None) == id(f):
        return f.__wrapped__  # type: ignore[attr-defined,no-any-return]
    return f


def enable_ki_protection(f: _F, /) -> _F:
    """Decorator: code in ``f`` (and what it calls, unless that code says
    otherwise) does not get :exc:`KeyboardInterrupt` raised in the middle of
    it; the interrupt is delivered at the next checkpoint instead.

    Works on plain functions, coroutine functions, generator and async
    generator functions. Returns ``f`` itself: the call costs nothing.
    """
    _set_protection(_unwrap_legacy_asyncgen(f).__code__, True)
    return f


def disable_ki_protection(f: _F, /) -> _F:
    """Decorator: :exc:`KeyboardInterrupt` may be raised anywhere inside
    ``f``, even when its caller is protected. Returns ``f`` itself."""
    _set_protection(_unwrap_legacy_asyncgen(f).__code__, False)
    return f


def ki_protection_enabled(frame: types.FrameType | None) -> bool:
    """Whether a SIGINT arriving while ``frame`` runs must be deferred."""
    try:
        task = GLOBAL_RUN_CONTEXT.task
    except AttributeError:
        task_protected = False
        task_frame = None
    else:
        task_protected = task._ki_protected
        task_frame = task.coro.cr_frame
    while frame is not None:
        code = frame.f_code
        status = _lookup(code)
        if status is not None:
            return status
        if code.co_name == "__del__":
            return True
        if frame is task_frame:
            return task_protected
        frame = frame.f_back
    # Off the bottom of the stack without a verdict: we are in the run loop
    # itself (which is protected) or outside any task.
    return True


def currently_ki_protected() -> bool:
    """Whether the calling code has :exc:`KeyboardInterrupt` protection
    enabled: what the SIGINT handler would decide if the signal arrived
    now. Useful in asserts and tests."""
    return ki_protection_enabled(sys._getframe(1))


class KIManager:
    """Installs the run's SIGINT handler (main thread only, and only when the
    default handler is in place) and removes it at the end of the run."""

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: Callable[[int, types.FrameType | None], None] | None = None

    def install(
        self,
        deliver_cb: Callable[[], object],
        restrict_keyboard_interrupt_to_checkpoints: bool,
    ) -> None:
        assert self.handler is None
        if (
            threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) != signal.default_int_handler
        ):
            return

        def handler(signum: int, frame: types.FrameType | None) -> None:
            assert signum == signal.SIGINT
            if restrict_keyboard_interrupt_to_checkpoints or ki_protection_enabled(frame):
                deliver_cb()
            else:
                raise KeyboardInterrupt

        self.handler = handler
        signal.signal(signal.SIGINT, handler)

    def close(self) -> None:
        if self.handler is not None:
            if signal.getsignal(signal.SIGINT) is self.handler:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            self.handler = None
