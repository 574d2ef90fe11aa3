"""assert_checkpoints / assert_no_checkpoints against real corral primitives."""

from __future__ import annotations

import pytest

import corral
from corral.lowlevel import cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled
from corral.testing import assert_checkpoints, assert_no_checkpoints

DID_NOT_YIELD = r"^assert_checkpoints block did not yield!$"
YIELDED = r"^assert_no_checkpoints block yielded!$"


async def no_checkpoint() -> int:
    # An async function that never reaches the scheduler.
    return 42


async def test_checkpoint_and_sleep_zero_are_checkpoints() -> None:
    with assert_checkpoints():
        await checkpoint()
    with assert_checkpoints():
        await corral.sleep(0)


async def test_block_without_checkpoint_fails() -> None:
    with pytest.raises(AssertionError, match=DID_NOT_YIELD):
        with assert_checkpoints():
            assert await no_checkpoint() == 42
    with pytest.raises(AssertionError, match=DID_NOT_YIELD):
        with assert_checkpoints():
            pass


async def test_a_cancel_point_alone_is_not_a_checkpoint() -> None:
    # checkpoint_if_cancelled passes a cancel point but never yields.
    with pytest.raises(AssertionError, match=DID_NOT_YIELD):
        with assert_checkpoints():
            await checkpoint_if_cancelled()


async def test_a_schedule_point_alone_is_not_a_checkpoint() -> None:
    # cancel_shielded_checkpoint yields but cannot be cancelled.
    with pytest.raises(AssertionError, match=DID_NOT_YIELD):
        with assert_checkpoints():
            await cancel_shielded_checkpoint()


async def test_assert_checkpoints_lets_exceptions_through_unjudged() -> None:
    with pytest.raises(ValueError, match=r"^boom$"):
        with assert_checkpoints():
            raise ValueError("boom")


async def test_cancelled_at_the_checkpoint_propagates() -> None:
    with corral.CancelScope() as scope:
        scope.cancel()
        with assert_checkpoints():
            await checkpoint()
        raise AssertionError("not reached")  # pragma: no cover
    assert scope.cancelled_caught


async def test_no_checkpoints_passes_without_yielding() -> None:
    with assert_no_checkpoints():
        assert await no_checkpoint() == 42
    with assert_no_checkpoints():
        # Synchronous corral calls never checkpoint.
        corral.current_time()
        corral.CancelScope().cancel()


@pytest.mark.parametrize(
    "primitive",
    [checkpoint, checkpoint_if_cancelled, cancel_shielded_checkpoint, lambda: corral.sleep(0)],
    ids=["checkpoint", "checkpoint_if_cancelled", "cancel_shielded_checkpoint", "sleep0"],
)
async def test_no_checkpoints_fails_on_any_cancel_or_schedule_point(primitive) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AssertionError, match=YIELDED):
        with assert_no_checkpoints():
            await primitive()


async def test_no_checkpoints_judges_blocks_that_raise() -> None:
    with pytest.raises(AssertionError, match=YIELDED) as info:
        with assert_no_checkpoints():
            await checkpoint()
            raise KeyError("inner")
    # The block's own exception is kept as the context.
    assert isinstance(info.value.__context__, KeyError)

    with pytest.raises(KeyError):
        with assert_no_checkpoints():
            raise KeyError("no checkpoint, so this passes through")


def test_outside_a_run_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        with assert_checkpoints():
            pass  # pragma: no cover
    with pytest.raises(RuntimeError):
        with assert_no_checkpoints():
            pass  # pragma: no cover
