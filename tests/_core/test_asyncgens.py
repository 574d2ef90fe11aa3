"""Async generator finalization hooks, as Trio does them."""

from __future__ import annotations

import gc
import sys

import pytest

import corral
import corral.lowlevel as ll
from corral.testing import wait_all_tasks_blocked


def test_unfinished_asyncgens_are_closed_at_end_of_run() -> None:
    record: list[str] = []
    saved = []

    async def agen():  # type: ignore[no-untyped-def]
        try:
            yield 1
            yield 2
        finally:
            record.append(f"closed in task {ll.current_task().name!r}")
            # Async work during finalization is cancelled, not forbidden.
            with pytest.raises(corral.Cancelled):
                await ll.checkpoint()

    async def main() -> None:
        gen = agen()
        saved.append(gen)  # keep it alive past the main task
        assert await gen.__anext__() == 1

    corral.run(main)
    assert len(record) == 1
    assert record[0].startswith("closed in task '<init>'")


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="relies on refcounting")
def test_garbage_collected_asyncgen_is_finalized_in_system_task() -> None:
    record: list[str] = []

    async def agen():  # type: ignore[no-untyped-def]
        try:
            yield 1
            yield 2
        finally:
            record.append(ll.current_task().name)

    async def main() -> None:
        gen = agen()
        assert await gen.__anext__() == 1
        with pytest.warns(ResourceWarning, match="was garbage collected before it had been exhausted"):
            del gen
            gc.collect()
        await wait_all_tasks_blocked()
        assert len(record) == 1
        assert record[0].startswith("close asyncgen ")
        assert record[0].endswith(" (abandoned)")

    corral.run(main)


def test_hooks_restored_after_run() -> None:
    before = sys.get_asyncgen_hooks()

    async def main() -> None:
        assert sys.get_asyncgen_hooks() != before

    corral.run(main)
    assert sys.get_asyncgen_hooks() == before


def test_finalizer_errors_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    keep = []

    async def agen():  # type: ignore[no-untyped-def]
        try:
            yield 1
        finally:
            raise ValueError("finalizer failed")

    async def main() -> None:
        gen = agen()
        keep.append(gen)
        await gen.__anext__()

    corral.run(main)
    assert any(
        rec.name == "corral.async_generator_errors"
        and "Exception ignored during finalization of async generator" in rec.getMessage()
        for rec in caplog.records
    )
