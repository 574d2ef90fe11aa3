"""Invariant helpers: the byte-exact stream checker and the resource census.

:class:`ByteStreamChecker` lets a scenario prove that a byte stream survives
cancellations: the sender writes a deterministic pattern (every byte is a
function of its offset and the checker's seed), the receiver hands every
byte it got to :meth:`ByteStreamChecker.received`, and the checker counts
bytes lost, duplicated or corrupted. A cancelled ``send_all`` leaves an
unknown prefix sent (Trio's contract for ``send_all``); the sender declares
that with :meth:`ByteStreamChecker.send_uncertain`, and bytes after the
last confirmed offset may then be missing without counting as lost.

The census functions snapshot what a run could leak: open file descriptors
(``/proc/self/fd`` on Linux), pool leases, operations in flight, living
tasks.
"""

from __future__ import annotations

import os
import random
import sys

import attrs

_BLOCK = 4096
# A chunk is located in the pattern by its first bytes; 16 random bytes
# repeat by chance with probability ~2**-128 per offset.
_PROBE = 16


@attrs.frozen
class StreamStatistics:
    """What a :class:`ByteStreamChecker` saw.

    Attributes:
      name: the checker's name.
      sent: bytes the sender confirmed (``send_all`` returned).
      uncertain: bytes offered to a cancelled send whose fate is unknown.
      received: bytes handed to :meth:`ByteStreamChecker.received`.
      lost: bytes the receiver never got although their sending was
        confirmed (or that were skipped before a later byte arrived).
      duplicated: bytes the receiver got more than once.
      corrupted: bytes that match no offset of the pattern.
    """

    name: str
    sent: int
    uncertain: int
    received: int
    lost: int
    duplicated: int
    corrupted: int

    @property
    def ok(self) -> bool:
        """No lost, duplicated or corrupted byte."""
        return self.lost == 0 and self.duplicated == 0 and self.corrupted == 0


class ByteStreamChecker:
    """Byte-exact bookkeeping for one direction of one stream.

    Sender side: ``data = checker.next_chunk(n)`` gives the next ``n``
    pattern bytes (without consuming them); after writing, call
    :meth:`sent` with how many were written, or :meth:`send_uncertain` if the
    write was cancelled (or failed) with an unknown part written.

    Receiver side: :meth:`received` with every chunk, in order; at the end,
    :meth:`finish` (``eof=True`` if the receiver read to end of stream, so
    every confirmed byte must have arrived).

    Any mismatch is counted, never raised, so a long run can report totals;
    :meth:`check` raises ``AssertionError`` describing the first problem.
    """

    def __init__(self, name: str = "stream", seed: int = 0) -> None:
        self.name = name
        self._seed = seed
        self._pattern = bytearray()
        self._sent = 0
        self._uncertain = 0
        self._recv = 0
        self._received = 0
        self._lost = 0
        self._dup = 0
        self._corrupt = 0
        self._first_problem: str | None = None

    # -- the pattern --------------------------------------------------------

    def _ensure(self, end: int) -> None:
        pattern = self._pattern
        while len(pattern) < end:
            block = len(pattern) // _BLOCK
            pattern += random.Random(f"{self._seed}:{self.name}:{block}").randbytes(_BLOCK)

    def pattern(self, start: int, stop: int) -> bytes:
        """The pattern bytes at offsets ``[start, stop)``."""
        self._ensure(stop)
        return bytes(self._pattern[start:stop])

    # -- sender side ----------------------------------------------------------

    @property
    def sent_offset(self) -> int:
        """Offset of the next byte to send (confirmed bytes so far)."""
        return self._sent

    def next_chunk(self, n: int) -> bytes:
        """The next ``n`` bytes to send (not consumed until :meth:`sent`)."""
        return self.pattern(self._sent, self._sent + n)

    def sent(self, n: int) -> None:
        """The sender wrote ``n`` more bytes for sure."""
        if n < 0:
            raise ValueError(f"sent count must be >= 0, not {n}")
        self._sent += n
        # Bytes sent for sure were, at worst, previously uncertain.
        self._uncertain = max(0, self._uncertain - n)

    def send_uncertain(self, n: int) -> None:
        """A send of ``n`` bytes at :attr:`sent_offset` was cancelled or
        failed: any prefix of them may have reached the peer. The sender
        must not send those offsets again (use a new checker for a new
        connection)."""
        self._uncertain = max(self._uncertain, n)

    # -- receiver side ----------------------------------------------------------

    def received(self, data: bytes | bytearray | memoryview) -> None:
        """The receiver got ``data`` next. Counts mismatches."""
        data = bytes(data)
        if not data:
            return
        self._received += len(data)
        start = self._recv
        end_known = self._sent + self._uncertain
        self._ensure(max(end_known, start + len(data)) + _BLOCK)
        pattern = self._pattern
        if pattern[start : start + len(data)] == data:
            self._recv += len(data)
            return
        # Locate the chunk by its first bytes: it skipped ahead (lost bytes),
        # went back (duplicated bytes), or matches nothing (corruption).
        probe = data[: min(_PROBE, len(data))]
        where = pattern.find(probe, start)
        back = pattern.rfind(probe, 0, start + len(probe) - 1)
        if where >= 0 and pattern[where : where + len(data)] == data:
            lost = where - start
            self._lost += lost
            self._note(f"{lost} bytes lost before offset {where}")
            self._recv = where + len(data)
        elif back >= 0 and pattern[back : back + len(data)] == data:
            dup = min(start, back + len(data)) - back
            self._dup += dup
            self._note(f"{dup} bytes at offset {back} received twice")
            self._recv = max(start, back + len(data))
        else:
            self._corrupt += len(data)
            self._note(f"{len(data)} bytes at offset {start} match no offset of the stream")
            self._recv += len(data)

    def finish(self, *, eof: bool = True) -> StreamStatistics:
        """End of the stream. With ``eof``, every confirmed byte must have
        been received (the rest is counted as lost). Returns the totals."""
        if eof and self._recv < self._sent:
            missing = self._sent - self._recv
            self._lost += missing
            self._note(f"{missing} confirmed bytes never arrived (stream ended at {self._recv})")
            self._recv = self._sent
        if self._recv > self._sent + self._uncertain:
            extra = self._recv - self._sent - self._uncertain
            self._corrupt += extra
            self._note(f"{extra} bytes received that were never sent")
            self._sent = self._recv
        return self.statistics()

    def statistics(self) -> StreamStatistics:
        """The totals so far."""
        return StreamStatistics(
            name=self.name,
            sent=self._sent,
            uncertain=self._uncertain,
            received=self._received,
            lost=self._lost,
            duplicated=self._dup,
            corrupted=self._corrupt,
        )

    def check(self) -> None:
        """Raise ``AssertionError`` naming the first problem, if any."""
        if self._first_problem is not None:
            raise AssertionError(f"byte stream {self.name!r}: {self._first_problem}")

    def _note(self, problem: str) -> None:
        if self._first_problem is None:
            self._first_problem = problem


# -- census ---------------------------------------------------------------------


def fd_census() -> dict[int, str]:
    """The open file descriptors of this process and what they point at
    (``readlink`` of ``/proc/self/fd/N``). Empty where ``/proc`` is
    unavailable (the fd check is then skipped)."""
    if not sys.platform.startswith("linux"):
        return {}
    out: dict[int, str] = {}
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # pragma: no cover - no /proc
        return {}
    for name in names:
        fd = int(name)
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            # The fd listdir itself used, already closed.
            continue
    return out


def leaked_fds(before: dict[int, str], after: dict[int, str]) -> list[str]:
    """Describe fds open in ``after`` that were not open (to the same
    target) in ``before``."""
    return [
        f"fd {fd} -> {target}"
        for fd, target in sorted(after.items())
        if before.get(fd) != target and not target.startswith("/proc/")
    ]


@attrs.frozen
class RuntimeCensus:
    """What a run still held when its scenario ended (taken inside the run
    after in-flight orphans were given a chance to complete).

    Attributes:
      ops_in_flight: ``repr`` of every operation still in flight.
      leases: ``repr`` of every pool lease still held.
      tasks: how many tasks the scenario left running.
    """

    ops_in_flight: tuple[str, ...]
    leases: tuple[str, ...]
    tasks: int
