"""Tokens for in-flight ops: slot + generation, never reused while live.

A token (io_uring's 64-bit ``user_data``) is ``generation << SLOT_BITS |
slot``. The slot indexes a list of in-flight ops; the generation counts how
often that slot was handed out. A completion whose token's generation does
not match the slot's current one belongs to an earlier submission and is
*stale*: it can only come from a kernel bug or from our own internal
requests, and is never delivered to the op now using the slot. Tokens with
bit 63 set are reserved for the backend's internal requests (cancels,
wakeups), which own no op.
"""

from __future__ import annotations

from typing import Any

SLOT_BITS = 20
SLOT_MASK = (1 << SLOT_BITS) - 1
#: Tokens at or above this value are internal (no op behind them).
INTERNAL = 1 << 63
_GEN_LIMIT = (1 << (63 - SLOT_BITS)) - 1


class SlotTable:
    """In-flight ops by token. Run-thread only."""

    __slots__ = ("free", "gens", "ops")

    def __init__(self) -> None:
        self.ops: list[Any] = []
        self.gens: list[int] = []
        self.free: list[int] = []

    @property
    def live(self) -> int:
        """How many ops are in the table. Derived, not counted, so a
        backend's inlined add/remove need not keep a counter in step."""
        return len(self.ops) - len(self.free)

    def add(self, op: Any) -> int:
        """Store ``op`` and return its fresh token."""
        free = self.free
        if free:
            slot = free.pop()
        else:
            slot = len(self.ops)
            if slot > SLOT_MASK:
                raise RuntimeError("too many operations in flight")
            self.ops.append(None)
            self.gens.append(0)
        gen = self.gens[slot] + 1
        if gen > _GEN_LIMIT:  # pragma: no cover - 2**43 uses of one slot
            gen = 1
        self.gens[slot] = gen
        self.ops[slot] = op
        return (gen << SLOT_BITS) | slot

    def get(self, token: int) -> Any:
        """The op for ``token``, or ``None`` if the token is stale/internal."""
        if token >= INTERNAL:
            return None
        slot = token & SLOT_MASK
        if slot >= len(self.ops) or self.gens[slot] != token >> SLOT_BITS:
            return None
        return self.ops[slot]

    def pop(self, token: int) -> Any:
        """Remove and return the op for ``token`` (``None`` if stale)."""
        op = self.get(token)
        if op is not None:
            slot = token & SLOT_MASK
            self.ops[slot] = None
            self.free.append(slot)
        return op

    def values(self) -> list[Any]:
        """Every op in flight."""
        return [op for op in self.ops if op is not None]
