"""The exception types of the core, with Trio's names and meanings.

``CorralInternalError`` is corral's name for Trio's ``TrioInternalError``; the
Trio spelling is kept as an alias so ported code that catches it still works.
"""

from __future__ import annotations

from typing import Any, Literal, NoReturn, TypeAlias

CancelReasonLiteral: TypeAlias = Literal[
    "KeyboardInterrupt",
    "deadline",
    "explicit",
    "nursery",
    "shutdown",
    "unknown",
]


class CorralInternalError(Exception):
    """Raised by :func:`corral.run` when corral itself has a bug, or when a
    :mod:`corral.lowlevel` API was misused badly enough to break the
    scheduler's invariants.

    This should never happen. If it does, the run's state is undefined (tasks
    may have been lost track of); please report it with the traceback, whose
    ``__cause__`` is the original error.
    """


#: Trio's name for :exc:`CorralInternalError`, so ported code keeps working.
TrioInternalError = CorralInternalError


class RunFinishedError(RuntimeError):
    """Raised by :func:`corral.from_thread.run` and friends when the run they
    target has already finished."""


class WouldBlock(Exception):
    """Raised by ``X_nowait`` functions when ``X`` would block."""


class _NoPublicConstructor(type):
    """Metaclass whose classes can only be built through ``cls._create``."""

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor"
        )

    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs)


class Cancelled(BaseException, metaclass=_NoPublicConstructor):
    """Raised by a blocking call when a surrounding cancel scope is cancelled.

    Let it propagate: the cancel scope that was cancelled catches it. It
    derives from :exc:`BaseException` (like :exc:`KeyboardInterrupt`) so that
    ``except Exception:`` does not swallow it by accident.

    It cannot be constructed directly (that raises :exc:`TypeError`); cancel
    a :class:`corral.CancelScope` instead.

    Attributes:
      source: why the scope was cancelled: ``"deadline"``, ``"explicit"``
        (:meth:`CancelScope.cancel`), ``"nursery"`` (a sibling task raised),
        ``"KeyboardInterrupt"``, ``"shutdown"`` or ``"unknown"``.
      source_task: ``repr()`` of the task that called ``cancel()``, if any
        (a string, so the exception does not keep the task alive).
      reason: the string passed to ``cancel(reason=...)``, if any.
    """

    # Plain __slots__-free attributes: Cancelled is raised on hot paths
    # (every cancellation delivery), so construction stays a few stores.
    source: CancelReasonLiteral
    source_task: str | None
    reason: str | None

    def __init__(
        self,
        *,
        source: CancelReasonLiteral = "unknown",
        source_task: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.source_task = source_task
        self.reason = reason

    def __str__(self) -> str:
        text = f"cancelled due to {self.source}"
        if self.reason is not None:
            text += f" with reason {self.reason!r}"
        if self.source_task is not None:
            text += f" from task {self.source_task}"
        return text

    def __repr__(self) -> str:
        return (
            f"Cancelled(source={self.source!r}, source_task={self.source_task!r}, "
            f"reason={self.reason!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_cancelled, (self.source, self.source_task, self.reason))

    if False:  # pragma: no cover - for type checkers only
        @classmethod
        def _create(
            cls,
            *,
            source: CancelReasonLiteral = "unknown",
            source_task: str | None = None,
            reason: str | None = None,
        ) -> Cancelled: ...


def _rebuild_cancelled(
    source: CancelReasonLiteral, source_task: str | None, reason: str | None
) -> Cancelled:
    return Cancelled._create(source=source, source_task=source_task, reason=reason)


class BusyResourceError(Exception):
    """Raised when a task uses a resource another task is already using in a
    way that would interleave nonsensically (two tasks sending on one stream
    at once, for example)."""


class ClosedResourceError(Exception):
    """Raised when a resource is used after *your* code closed it (with
    ``close()``/``aclose()`` or by leaving its context manager).

    A resource broken by something outside your code (the peer went away)
    raises :exc:`BrokenResourceError` or an :exc:`OSError` instead.
    """


class BrokenResourceError(Exception):
    """Raised when a resource cannot be used because of something outside
    your code, such as a peer that reset the connection. ``__cause__`` often
    holds the underlying error."""


class EndOfChannel(Exception):
    """Raised when receiving from a :class:`corral.abc.ReceiveChannel` whose
    senders have all closed: the channel's end-of-file."""
