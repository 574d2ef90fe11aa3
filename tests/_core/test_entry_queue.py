"""CorralToken.run_sync_soon: re-entry from threads, ordering, idempotency,
errors, and the end of the run."""

from __future__ import annotations

import threading

import pytest

import corral
import corral.lowlevel as ll
from corral.testing import wait_all_tasks_blocked


async def test_token_identity_and_aliases() -> None:
    token = ll.current_corral_token()
    assert token is ll.current_corral_token()
    assert ll.current_trio_token is ll.current_corral_token
    assert ll.TrioToken is ll.CorralToken
    assert isinstance(token, ll.CorralToken)
    assert hash(token) == hash(ll.current_corral_token())
    with pytest.raises(TypeError):
        ll.CorralToken()  # type: ignore[call-arg]


async def test_run_sync_soon_from_thread_wakes_run() -> None:
    token = ll.current_corral_token()
    done = corral.Event()
    record: list[tuple[str, bool]] = []

    def callback(arg: str) -> None:
        record.append((arg, ll.currently_ki_protected()))
        done.set()

    threading.Thread(target=token.run_sync_soon, args=(callback, "x")).start()
    with corral.fail_after(30):
        await done.wait()
    assert record == [("x", True)]


async def test_fifo_order() -> None:
    token = ll.current_corral_token()
    record: list[int] = []
    for i in range(50):
        token.run_sync_soon(record.append, i)
    await wait_all_tasks_blocked()
    assert record == list(range(50))


async def test_idempotent() -> None:
    token = ll.current_corral_token()
    record: list[int] = []
    for _ in range(5):
        token.run_sync_soon(record.append, 1, idempotent=True)
    token.run_sync_soon(record.append, 2, idempotent=True)
    assert ll.current_statistics().run_sync_soon_queue_size == 2
    await wait_all_tasks_blocked()
    assert sorted(record) == [1, 2]


def test_crashing_callback_is_internal_error() -> None:
    async def main() -> None:
        def boom() -> None:
            raise KeyError("cb")

        ll.current_corral_token().run_sync_soon(boom)
        await corral.sleep_forever()

    with pytest.raises(corral.CorralInternalError) as info:
        corral.run(main)
    assert info.value.__cause__ is not None
    matched, _ = BaseExceptionGroup("x", [info.value.__cause__]).split(KeyError)
    assert matched is not None


def test_run_finished_error_after_run() -> None:
    async def main() -> ll.CorralToken:
        return ll.current_corral_token()

    token = corral.run(main)
    with pytest.raises(corral.RunFinishedError, match=r"^run\(\) has exited$"):
        token.run_sync_soon(lambda: None)


def test_callbacks_queued_before_exit_still_run() -> None:
    record: list[str] = []

    async def main() -> None:
        ll.current_corral_token().run_sync_soon(record.append, "late")

    corral.run(main)
    assert record == ["late"]


async def test_spawn_system_task_late_from_callback() -> None:
    # run_sync_soon callbacks can spawn system tasks while the run is live.
    token = ll.current_corral_token()
    ran = corral.Event()

    async def system() -> None:
        ran.set()

    token.run_sync_soon(ll.spawn_system_task, system)
    await ran.wait()
