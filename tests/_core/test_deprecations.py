"""Deprecations: Trio's warnings, with Trio's words, blamed on the caller."""

from __future__ import annotations

import queue
import re
import warnings
from typing import Any

import pytest

import corral
import corral._core as core
import corral.lowlevel as ll

ADVICE = (
    "is deprecated since corral 0.1.0; use the default value of True and rewrite "
    "exception handlers to handle ExceptionGroups. See "
    "https://trio.readthedocs.io/en/stable/reference-core.html#designing-for-multiple-errors "
    "instead (https://github.com/python-trio/trio/issues/2929)"
)


def loose_groups_message(thing: str) -> str:
    return "^" + re.escape(f"{thing} {ADVICE}") + "$"


async def nothing() -> None:
    pass


@pytest.mark.parametrize("run", [corral.run, core.run])
def test_run_with_loose_exception_groups_warns(run: Any) -> None:
    with pytest.warns(
        DeprecationWarning,
        match=loose_groups_message("corral.run(..., strict_exception_groups=False)"),
    ) as record:
        run(nothing, strict_exception_groups=False)
    # Blamed on this line, not on a corral layer.
    assert [w.filename for w in record] == [__file__]


def test_open_nursery_with_loose_exception_groups_warns() -> None:
    async def main() -> None:
        async with corral.open_nursery(strict_exception_groups=False):
            pass

    with pytest.warns(
        DeprecationWarning,
        match=loose_groups_message("open_nursery(strict_exception_groups=False)"),
    ) as record:
        corral.run(main)
    assert [w.filename for w in record] == [__file__]


def test_start_guest_run_with_loose_exception_groups_warns() -> None:
    todo: queue.Queue[Any] = queue.Queue()
    done: list[Any] = []
    with pytest.warns(
        DeprecationWarning,
        match=loose_groups_message("corral.start_guest_run(..., strict_exception_groups=False)"),
    ):
        ll.start_guest_run(
            nothing,
            run_sync_soon_threadsafe=todo.put,
            done_callback=done.append,
            strict_exception_groups=False,
        )
    while not done:
        todo.get(timeout=10)()
    done[0].unwrap()


def test_strict_or_default_exception_groups_do_not_warn() -> None:
    async def main() -> None:
        async with corral.open_nursery():
            pass
        async with corral.open_nursery(strict_exception_groups=True):
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corral.run(main)
        corral.run(main, strict_exception_groups=True)
