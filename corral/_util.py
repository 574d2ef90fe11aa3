"""Small helpers shared across corral's layers."""

from __future__ import annotations

from typing import Any

from ._core._exceptions import BusyResourceError


def fixup_module_metadata(module_name: str, namespace: dict[str, Any]) -> None:
    """Make re-exported public classes and functions report their public
    module (``corral.Cancelled``, not ``corral._core._exceptions.Cancelled``),
    which is what users see in reprs and error messages."""
    seen: set[int] = set()

    def fix(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        mod = getattr(obj, "__module__", None)
        if not isinstance(mod, str) or not mod.startswith("corral."):
            return
        if not any(part.startswith("_") for part in mod.split(".")):
            return
        try:
            obj.__module__ = module_name
        except (AttributeError, TypeError):
            return
        if isinstance(obj, type):
            for value in list(obj.__dict__.values()):
                if callable(value) or isinstance(value, type):
                    fix(value)

    for name, obj in list(namespace.items()):
        if not name.startswith("_") and (isinstance(obj, type) or callable(obj)):
            fix(obj)


class ConflictDetector:
    """Raise :exc:`corral.BusyResourceError` when two tasks are inside the same
    non-reentrant section at once (``with detector: ...``).

    For operations that must never overlap on one resource (two ``send_all``
    calls on one stream) but that we do not want to serialize with a lock:
    overlapping calls are a bug in the caller, so the second one fails at
    once with ``msg`` instead of waiting.
    """

    __slots__ = ("_held", "_msg")

    def __init__(self, msg: str) -> None:
        self._msg = msg
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise BusyResourceError(self._msg)
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False
