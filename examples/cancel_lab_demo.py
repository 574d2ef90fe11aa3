"""The cancel-safety lab finds a classic bug, then passes the fixed version.

The bug: a reader receives a chunk, then awaits something else (here an
async audit hook) before it appends the chunk to its buffer. If the reader
is cancelled at that checkpoint -- a timeout around one read, say -- the
chunk is gone: the socket already gave it up. corral's receive itself is
cancel-safe (a completed receive is always delivered); the loss is in the
user's code, and the lab shows the exact checkpoint where it happens.

    .venv/bin/python examples/cancel_lab_demo.py
"""

from __future__ import annotations

import corral
from corral import socket as csocket
from corral.testing import CancelLab, CancelLabFailure, cancel_at_every_checkpoint


async def audit(chunk: bytes) -> None:
    """Some async bookkeeping (a log write, a metrics call...)."""
    await corral.lowlevel.checkpoint()


async def pump(lab: CancelLab, *, fixed: bool) -> None:
    a, b = csocket.socketpair()
    try:
        # lab.stream: a byte-exact checker of what was sent and received.
        stream = lab.stream("demo")

        async def writer() -> None:
            data = stream.next_chunk(2000)
            view = memoryview(data)
            while view:
                n = await a.send(view)
                stream.sent(n)
                view = view[n:]
            a.shutdown(csocket.SHUT_WR)

        async def reader() -> None:
            while True:
                # The region the lab may cancel: one read, like a
                # per-read timeout would.
                with lab.cancellable():
                    chunk = await b.recv(300)
                    if fixed:
                        stream.received(chunk)  # keep it first...
                        await audit(chunk)  # ...then await anything else
                    else:
                        await audit(chunk)  # BUG: a cancel here drops chunk
                        stream.received(chunk)
                    if not chunk:
                        return

        async with corral.open_nursery() as nursery:
            nursery.start_soon(writer)
            nursery.start_soon(reader)
        stream.finish()  # every byte the writer sent must have arrived
    finally:
        a.close()
        b.close()


async def unsafe(lab: CancelLab) -> None:
    await pump(lab, fixed=False)


async def fixed(lab: CancelLab) -> None:
    await pump(lab, fixed=True)


def main() -> None:
    print("== the unsafe reader ==")
    report = cancel_at_every_checkpoint(unsafe, max_sites=40)
    print(report.table())
    try:
        report.raise_for_failures(limit=1)
    except CancelLabFailure as exc:
        print(exc)
    else:  # pragma: no cover - the lab must find the bug
        raise SystemExit("the lab did not find the bug")
    print()
    print("== the fixed reader ==")
    report = cancel_at_every_checkpoint(fixed, max_sites=40)
    print(report.table())
    report.raise_for_failures()
    print(f"no failure in {len(report.runs)} runs, {report.cancellations} cancellations")


if __name__ == "__main__":
    main()
