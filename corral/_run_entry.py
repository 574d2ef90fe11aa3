"""The public :func:`corral.run`: the core's ``run`` plus backend selection.

``_core`` knows no backend; this module resolves one (``_io/_select.py``)
and passes its factory down as ``io_manager_factory``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ._core import run as _core_run
from ._io._select import make_io_manager_factory

RetT = TypeVar("RetT")


def run(
    async_fn: Callable[..., Awaitable[RetT]],
    *args: object,
    clock: Any = None,
    instruments: Sequence[Any] = (),
    restrict_keyboard_interrupt_to_checkpoints: bool = False,
    strict_exception_groups: bool = True,
    backend: str | None = None,
    debug: bool | None = None,
    pool_buffer_size: int | None = None,
    pool_buffers: int | None = None,
) -> RetT:
    """Run ``await async_fn(*args)`` in a new corral run and return its
    result (or raise its exception). Trio's :func:`trio.run`, plus:

    Args:
      backend: ``"io_uring"``, ``"epoll"`` or ``"fake"``; ``None`` means the
        ``CORRAL_BACKEND`` environment variable, else io_uring and then epoll
        on Linux. A fallback from the default order is recorded in the
        backend's ``statistics().fallback_reason``.
      debug: poison released pool buffers and verify them on reuse, and
        check at the end of the run that every lease came back (default: the
        ``CORRAL_DEBUG`` environment variable).
      pool_buffer_size / pool_buffers: the ring pool's geometry (defaults:
        16 KiB x 256).

    Raises:
      corral.lowlevel.BackendUnavailableError: ``backend`` (or
        ``CORRAL_BACKEND``) names a backend that cannot start here.
      ValueError / TypeError: an unknown backend name or bad pool sizes.
      Everything :func:`corral._core.run` raises.
    """
    __tracebackhide__ = True
    factory = make_io_manager_factory(
        backend, debug=debug, buffer_size=pool_buffer_size, buffers=pool_buffers
    )
    kwargs: dict[str, Any] = {}
    if clock is not None:
        kwargs["clock"] = clock
    return _core_run(
        async_fn,
        *args,
        instruments=instruments,
        restrict_keyboard_interrupt_to_checkpoints=restrict_keyboard_interrupt_to_checkpoints,
        strict_exception_groups=strict_exception_groups,
        io_manager_factory=factory,
        **kwargs,
    )
