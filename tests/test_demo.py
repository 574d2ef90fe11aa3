"""The README's demo (examples/demo.py) runs and checks itself on every
backend this machine has, and unchanged on trio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def run_demo(env_backend: str | None, source: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if env_backend is not None:
        env["CORRAL_BACKEND"] = env_backend
    args = [sys.executable, "-c", source] if source is not None else [sys.executable, str(DEMO)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("backend", ["io_uring", "epoll", "iocp", "afd"])
def test_demo_runs_on_backend(backend: str) -> None:
    windows_backend = backend in ("iocp", "afd")
    if windows_backend != (sys.platform == "win32"):
        pytest.skip(f"{backend} is a {'Windows' if windows_backend else 'Linux'} backend")
    result = run_demo(backend)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all expectations held: True" in result.stdout
    assert "echoed b'hello over a completion-based socket'" in result.stdout


def test_demo_runs_unchanged_on_trio() -> None:
    trio = pytest.importorskip("trio")
    try:
        trio.run(trio.sleep, 0)
    except OSError as exc:  # Wine: trio's IOCP needs SIO_BSP_HANDLE_POLL
        pytest.skip(f"trio cannot start here: {exc!r}")
    source = DEMO.read_text().replace("\nimport corral\n", "\nimport trio as corral\n")
    assert "import trio as corral" in source
    result = run_demo(None, source)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all expectations held: True" in result.stdout
