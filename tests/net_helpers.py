"""Shared by the high-level networking tests (tests/test_highlevel_*.py):
every test runs once per real backend of this machine, through the corral
plugin's ``@pytest.mark.corral(run=run_on_backend)``.

A test module opts in with::

    from net_helpers import net_backend, run_on_backend  # noqa: F401
    pytestmark = pytest.mark.corral(run=run_on_backend)

``net_backend`` is an autouse fixture, parametrized over the backends.
"""

from __future__ import annotations

import socket as stdlib_socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import corral
from corral._io import _ring

BACKENDS: list[str] = []
if _ring.unavailable_reason(check_kernel=True) is None:
    BACKENDS.append("io_uring")
try:
    import corral._io.epoll

    BACKENDS.append("epoll")
except ImportError:  # pragma: no cover - not Linux
    pass
if sys.platform == "win32":  # pragma: no cover
    BACKENDS += ["iocp", "afd"]

_current = {"backend": BACKENDS[0] if BACKENDS else "io_uring"}

have_ipv6 = True
try:
    with stdlib_socket.socket(stdlib_socket.AF_INET6) as _s6:
        _s6.bind(("::1", 0))
except OSError:  # pragma: no cover - machines without IPv6 loopback
    have_ipv6 = False
needs_ipv6 = pytest.mark.skipif(not have_ipv6, reason="no IPv6 loopback")
needs_unix = pytest.mark.skipif(
    not hasattr(stdlib_socket, "AF_UNIX"), reason="no AF_UNIX (Windows CPython has none)"
)


def _under_wine() -> bool:
    if sys.platform != "win32":
        return False
    import ctypes

    # Wine's ntdll exports wine_get_version; Windows' does not.
    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")  # type: ignore[attr-defined, unused-ignore]  # Windows-only ctypes name


UNDER_WINE = _under_wine()
needs_rst = pytest.mark.skipif(
    UNDER_WINE, reason="Wine sends no RST on a zero-linger close (EOF instead)"
)


@pytest.fixture(params=BACKENDS, autouse=True)
def net_backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: the test runs once per backend."""
    name = str(request.param)
    _current["backend"] = name
    return name


def current_backend_name() -> str:
    """The backend the running test uses."""
    return _current["backend"]


def run_on_backend(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """The run function of these tests: corral.run on the current backend,
    with the pool's debug canaries on (a buffer written after release, or a
    lease still held at the end of the run, fails the test)."""
    kwargs.setdefault("debug", True)
    return corral.run(fn, *args, backend=_current["backend"], **kwargs)
