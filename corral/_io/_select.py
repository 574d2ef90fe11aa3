"""Backend selection: which backend a run uses, and why.

Order of precedence: the ``backend=`` argument of :func:`corral.run`, then
the ``CORRAL_BACKEND`` environment variable, then the default order for the
platform (Linux: io_uring, then epoll; Windows: IOCP, whose readiness
waits use the ``\\Device\\Afd`` poller; ``"afd"``, the readiness adapter
that does every socket op through AFD polls, only when requested).

* A backend chosen by default that cannot start (io_uring refused with
  EPERM by the ``io_uring_disabled`` sysctl, ENOSYS under seccomp or on an
  old kernel, a missing feature, the extension not built) falls back to the
  next one. The fallback is never silent: the reason is in
  ``statistics().fallback_reason`` and in ``python -m corral``.
* A backend requested explicitly (argument or environment) that cannot
  start raises :exc:`BackendUnavailableError`; nothing falls back.

Every backend is constructed as ``Cls(pool, *, guest=bool,
install_wakeup_fd=bool | None, **options)`` (``install_wakeup_fd``: install
the signal wakeup socket with ``signal.set_wakeup_fd``; ``None`` means ``not
guest``).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any

from ._backend import Backend
from .pool import DEFAULT_BUFFER_COUNT, DEFAULT_BUFFER_SIZE, BufferPool

ENV_BACKEND = "CORRAL_BACKEND"
ENV_DEBUG = "CORRAL_DEBUG"

#: Backend names :func:`corral.run` accepts.
BACKEND_NAMES = ("io_uring", "epoll", "fake", "iocp", "afd")


class BackendUnavailableError(OSError):
    """An explicitly requested I/O backend cannot start on this machine.

    ``errno`` is the underlying error's (``EPERM`` when io_uring is disabled
    by the ``kernel.io_uring_disabled`` sysctl, ``ENOSYS`` when the kernel,
    a seccomp profile or the build lacks it).
    """


def default_order() -> tuple[str, ...]:
    """The backends tried, in order, when none is requested."""
    if sys.platform.startswith("linux"):
        return ("io_uring", "epoll")
    if sys.platform == "win32":
        return ("iocp",)
    return ()


def _check_name(name: str) -> None:
    # Validates without importing: a backend module may not even import on
    # another platform (epoll on Windows, iocp on Linux).
    if name not in BACKEND_NAMES:
        raise ValueError(
            f"unknown corral backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}"
        )


def _backend_class(name: str) -> Any:
    if name == "io_uring":
        from .uring import UringBackend

        return UringBackend
    if name == "epoll":
        from .epoll import EpollBackend

        return EpollBackend
    if name == "fake":
        from .fake import FakeKernel

        return FakeKernel
    if name == "iocp":
        from .iocp import IocpBackend

        return IocpBackend
    if name == "afd":
        from .afd import AfdBackend

        return AfdBackend
    raise ValueError(f"unknown corral backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")


def env_flag(name: str) -> bool:
    """Whether an environment flag is set to a true value."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def requested_backend(backend: str | None) -> tuple[str | None, str]:
    """``(name or None, source)`` where source says where the choice came
    from: ``"argument"``, ``"environment"`` or ``"default"``."""
    if backend is not None:
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, not {type(backend).__name__}")
        _check_name(backend)
        return backend, "argument"
    env = os.environ.get(ENV_BACKEND, "").strip()
    if env:
        _check_name(env)
        return env, "environment"
    return None, "default"


def make_io_manager_factory(
    backend: str | None = None,
    *,
    debug: bool | None = None,
    buffer_size: int | None = None,
    buffers: int | None = None,
    **options: Any,
) -> Callable[..., Backend]:
    """Return ``factory(guest=False, install_wakeup_fd=None) -> Backend`` for
    ``_core.run`` (``docs/internals.md``).

    Validation of the arguments happens here, at the call; starting the
    backend (and any fallback) happens when the run calls the factory.

    Raises (from the factory):
      BackendUnavailableError: an explicitly requested backend cannot start.
      OSError: no backend in the default order can start.
    """
    name, source = requested_backend(backend)
    if debug is None:
        debug = env_flag(ENV_DEBUG)
    size = DEFAULT_BUFFER_SIZE if buffer_size is None else buffer_size
    count = DEFAULT_BUFFER_COUNT if buffers is None else buffers
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"pool_buffer_size must be an int, not {type(size).__name__}")
    if not isinstance(count, int) or isinstance(count, bool):
        raise TypeError(f"pool_buffers must be an int, not {type(count).__name__}")
    if size <= 0:
        raise ValueError(f"pool_buffer_size must be positive, not {size}")
    if not 0 < count <= 32768:
        raise ValueError(f"pool_buffers must be in 1..32768, not {count}")

    def factory(guest: bool = False, install_wakeup_fd: bool | None = None) -> Backend:
        pool = BufferPool(size, count, debug=bool(debug))
        try:
            if name is not None:
                try:
                    return _backend_class(name)(  # type: ignore[no-any-return]
                        pool, guest=guest, install_wakeup_fd=install_wakeup_fd, **options
                    )
                except (OSError, ImportError, AttributeError) as exc:
                    # AttributeError: a module for another platform (epoll on
                    # Windows) imported but lacks the platform's constants.
                    code = getattr(exc, "errno", None) or errno.ENOSYS
                    raise BackendUnavailableError(
                        code,
                        f"corral backend {name!r} was requested ({source}) "
                        f"but cannot start: {getattr(exc, 'strerror', None) or exc}",
                    ) from exc
            reasons: list[str] = []
            for candidate in default_order():
                try:
                    chosen: Backend = _backend_class(candidate)(
                        pool, guest=guest, install_wakeup_fd=install_wakeup_fd, **options
                    )
                except (OSError, ImportError) as exc:
                    reasons.append(f"{candidate} unavailable: {exc}")
                    continue
                chosen.fallback_reason = "; ".join(reasons) or None
                return chosen
            raise OSError(
                errno.ENOSYS,
                "no corral I/O backend can start here: " + ("; ".join(reasons) or sys.platform),
            )
        except BaseException:
            pool.close()
            raise

    return factory


def describe_selection(backend: str | None = None) -> dict[str, Any]:
    """Start (and close) the backend a run would choose; for diagnostics.

    Returns a dict with ``backend``, ``source``, ``fallback_reason``,
    ``features``, ``capabilities``, ``pool`` and ``error`` (the error if no
    backend could start). Must be called outside a run.
    """
    info: dict[str, Any] = {"requested": backend, "error": None}
    try:
        info["source"] = requested_backend(backend)[1]
        manager = make_io_manager_factory(backend)(guest=False)
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info
    try:
        stats = manager.statistics()
        info["backend"] = stats.backend
        info["fallback_reason"] = stats.fallback_reason
        info["features"] = stats.features
        info["capabilities"] = stats.capabilities
        info["pool"] = stats.pool
        info["ring"] = getattr(manager, "ring_info", None)
    finally:
        manager.close()
    return info
