"""``python -m corral``: diagnostics for the completion core.

Prints the platform, the backend a run would choose here and why (the
``backend`` argument is not available on the command line; set
``CORRAL_BACKEND`` to test an explicit choice), a fallback's reason, the
probed io_uring features and the pool configuration. Exits 1 when no backend
can start.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from ._io import _ring
from ._io._select import ENV_BACKEND, ENV_DEBUG, default_order, describe_selection, env_flag


def report() -> tuple[str, int]:
    """Return the diagnostics text and the exit status."""
    lines = [
        "corral diagnostics",
        f"  python:   {sys.version.split()[0]} ({platform.python_implementation()})",
        f"  platform: {_platform()}",
        f"  {ENV_BACKEND}: {os.environ.get(ENV_BACKEND) or '(unset)'}",
        f"  {ENV_DEBUG}: {'on' if env_flag(ENV_DEBUG) else 'off'}",
        f"  default order: {', '.join(default_order()) or '(none on this platform)'}",
    ]
    info: dict[str, Any] = describe_selection()
    if info["error"] is not None:
        lines.append(f"  backend: NONE -- {info['error']}")
        return "\n".join(lines), 1
    why = {
        "argument": "requested explicitly",
        "environment": f"requested by {ENV_BACKEND}",
        "default": "first in the default order that started",
    }[info["source"]]
    lines.append(f"  backend: {info['backend']} ({why})")
    if info["fallback_reason"]:
        lines.append(f"  fallback reason: {info['fallback_reason']}")
    caps = info["capabilities"]
    lines.append(
        "  capabilities: "
        + ", ".join(
            f"{name}={'yes' if getattr(caps, name) else 'no'}"
            for name in ("multishot", "provided_buffers", "native_file_ops", "raw_ops")
        )
    )
    pool = info["pool"]
    lines.append(
        f"  pool: {pool.size} buffers x {pool.buffer_size} bytes "
        f"({pool.size * pool.buffer_size // 1024} KiB), debug canaries "
        f"{'on' if pool.debug else 'off'}"
    )
    ring = info.get("ring")
    if ring is not None:
        lines.append(f"  io_uring: sq_entries={ring.sq_entries} cq_entries={ring.cq_entries}")
        lines.append(f"    setup flags: {_names(_ring.SetupFlag, ring.setup_flags)}")
        lines.append(f"    features: {_names(_ring.Feature, ring.features)}")
        lines.append(f"    provided-buffer rings: {'yes' if ring.buf_ring else 'no'}")
        lines.append(f"    opcodes supported: {len(ring.opcodes)}")
        for flags, err in ring.refused:
            lines.append(f"    refused setup {_names(_ring.SetupFlag, flags)}: {os.strerror(err)}")
    elif info["backend"] in ("iocp", "afd"):
        lines.append(f"  windows paths: {', '.join(info['features'])}")
    elif info["backend"] != "io_uring":
        reason = _ring.unavailable_reason(check_kernel=True)
        lines.append(f"  io_uring: {reason or 'available (not selected)'}")
    return "\n".join(lines), 0


def _platform() -> str:
    if sys.platform == "win32":
        # platform.release() asks WMI, which Wine does not implement (the
        # process aborts); the version tuple needs no service.
        v = sys.getwindowsversion()  # type: ignore[attr-defined, unused-ignore]  # Windows-only
        arch = os.environ.get("PROCESSOR_ARCHITECTURE", "")
        return f"Windows {v.major}.{v.minor}.{v.build} {arch}".rstrip()
    return f"{platform.system()} {platform.release()} {platform.machine()}"


def _names(enum_cls: Any, value: int) -> str:
    names = [member.name for member in enum_cls if member & value]
    return " | ".join(names) or "(none)"


def main() -> int:
    """Print the report; return the exit status."""
    text, status = report()
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
