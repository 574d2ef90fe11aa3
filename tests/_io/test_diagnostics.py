"""``python -m corral`` diagnostics."""

from __future__ import annotations

import subprocess
import sys

import pytest
from iohelpers import REAL_BACKENDS


def run_diagnostics(**env: str) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if k not in ("CORRAL_BACKEND",)}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "corral"], capture_output=True, text=True, env=full, check=False
    )


@pytest.mark.skipif(
    "io_uring" not in REAL_BACKENDS,
    reason="io_uring unavailable" + (" (Windows has none)" if sys.platform == "win32" else ""),
)
def test_shows_io_uring_here() -> None:
    proc = run_diagnostics()
    assert proc.returncode == 0, proc.stderr
    assert "  backend: io_uring (first in the default order that started)" in proc.stdout
    assert "    provided-buffer rings: yes" in proc.stdout
    assert "  pool: 256 buffers x 16384 bytes" in proc.stdout


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="CORRAL_IO_URING_REFUSE simulates a Linux io_uring refusal; Windows has no io_uring",
)
windows_only = pytest.mark.skipif(sys.platform != "win32", reason="the Windows backends")


@linux_only
def test_shows_fallback_reason_when_refused() -> None:
    proc = run_diagnostics(CORRAL_IO_URING_REFUSE="EPERM")
    if "epoll" in REAL_BACKENDS:
        assert proc.returncode == 0, proc.stderr
        assert "  backend: epoll (first in the default order that started)" in proc.stdout
        assert "  fallback reason: io_uring unavailable: " in proc.stdout
        assert "Operation not permitted" in proc.stdout
    else:
        assert proc.returncode == 1
        assert "Operation not permitted" in proc.stdout


@linux_only
def test_explicit_backend_from_environment_refused() -> None:
    proc = run_diagnostics(CORRAL_BACKEND="io_uring", CORRAL_IO_URING_REFUSE="EPERM")
    assert proc.returncode == 1
    assert (
        "  backend: NONE -- BackendUnavailableError: [Errno 1] corral backend 'io_uring' "
        "was requested (environment) but cannot start: " in proc.stdout
    )


@windows_only
def test_shows_iocp_and_the_windows_paths_here() -> None:
    proc = run_diagnostics()
    assert proc.returncode == 0, proc.stderr
    assert "  default order: iocp\n" in proc.stdout
    assert "  backend: iocp (first in the default order that started)" in proc.stdout
    assert "  windows paths: iocp, zero-byte-recv, acceptex, connectex, afd-poll" in proc.stdout


@windows_only
def test_io_uring_requested_on_windows_is_an_error() -> None:
    import errno

    proc = run_diagnostics(CORRAL_BACKEND="io_uring")
    assert proc.returncode == 1
    assert (
        f"  backend: NONE -- BackendUnavailableError: [Errno {errno.ENOSYS}] corral backend "
        "'io_uring' was requested (environment) but cannot start: " in proc.stdout
    )
