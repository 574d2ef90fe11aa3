"""Async generator finalization (``sys.set_asyncgen_hooks``), as Trio does it.

An async generator first iterated inside a corral task belongs to the run:
if it is garbage-collected unfinished, its ``aclose()`` runs in a system
task (with a ResourceWarning), and any still alive when the main task ends
are closed one by one, in a cancelled shielded scope, before ``run``
returns. Generators first iterated outside a task (a guest run's host) are
handed to the host's previous hooks.
"""

from __future__ import annotations

import logging
import sys
import warnings
import weakref
from collections.abc import Callable
from types import AsyncGeneratorType
from typing import TYPE_CHECKING, Any, TypeVar

from ._ki import disable_ki_protection, enable_ki_protection
from ._run_context import GLOBAL_RUN_CONTEXT
from ._traps import Abort, wait_task_rescheduled

if TYPE_CHECKING:
    from ._run import Runner

#: Where errors raised while finalizing an async generator are logged.
ASYNCGEN_LOGGER = logging.getLogger("corral.async_generator_errors")

_R = TypeVar("_R")
_AGen = AsyncGeneratorType[Any, Any]


@disable_ki_protection
def _call_without_ki_protection(f: Callable[..., _R], /, *args: Any) -> _R:
    return f(*args)


def name_asyncgen(agen: _AGen) -> str:
    """The fully qualified name of the function that made ``agen``."""
    if not hasattr(agen, "ag_code"):  # pragma: no cover
        return repr(agen)
    try:
        module = agen.ag_frame.f_globals["__name__"]  # type: ignore[union-attr]
    except (AttributeError, KeyError):
        module = f"<{agen.ag_code.co_filename}>"
    try:
        qualname = agen.__qualname__
    except AttributeError:  # pragma: no cover
        qualname = agen.ag_code.co_name
    return f"{module}.{qualname}"


class AsyncGenerators:
    """The run's async generators and the hooks that track them."""

    def __init__(self) -> None:
        # Weak during the run so that GC works; a strong set during final
        # shutdown so that GC cannot fire at surprising moments.
        self.alive: weakref.WeakSet[_AGen] | set[_AGen] = weakref.WeakSet()
        # ids of generators first iterated outside any task (not ours). The
        # finalizer removes each id before the generator dies, so ids are
        # never stale.
        self.foreign: set[int] = set()
        # Collected in the one-tick window between the system nursery closing
        # and finalize_remaining() taking over.
        self.trailing_needs_finalize: set[_AGen] = set()
        self.prev_hooks: Any = None

    def install_hooks(self, runner: Runner) -> None:
        def firstiter(agen: _AGen) -> None:
            if hasattr(GLOBAL_RUN_CONTEXT, "task"):
                self.alive.add(agen)
            else:
                self.foreign.add(id(agen))
                if self.prev_hooks.firstiter is not None:
                    self.prev_hooks.firstiter(agen)

        def finalize_in_corral_context(agen: _AGen, agen_name: str) -> None:
            try:
                runner.spawn_system_task(
                    self._finalize_one,
                    agen,
                    agen_name,
                    name=f"close asyncgen {agen_name} (abandoned)",
                )
            except RuntimeError:
                self.trailing_needs_finalize.add(agen)

        @enable_ki_protection
        def finalizer(agen: _AGen) -> None:
            try:
                self.foreign.remove(id(agen))
            except KeyError:
                is_ours = True
            else:
                is_ours = False
            agen_name = name_asyncgen(agen)
            if is_ours:
                runner.entry_queue.run_sync_soon(finalize_in_corral_context, agen, agen_name)
                # Last: the user's warning filter may turn this into an
                # exception (printed and ignored, as we are in GC context).
                warnings.warn(
                    f"Async generator {agen_name!r} was garbage collected before it "
                    "had been exhausted. Surround its use in 'async with "
                    "aclosing(...):' to ensure that it gets cleaned up as soon as "
                    "you're done using it.",
                    ResourceWarning,
                    stacklevel=2,
                    source=agen,
                )
            else:
                prev_finalizer = self.prev_hooks.finalizer
                if prev_finalizer is not None:
                    _call_without_ki_protection(prev_finalizer, agen)
                else:
                    # What Python does with no hooks: throw GeneratorExit in,
                    # step once, complain if it does not finish.
                    closer = agen.aclose()
                    try:
                        _call_without_ki_protection(closer.send, None)
                    except StopIteration:
                        pass
                    else:
                        raise RuntimeError(
                            f"Non-corral async generator {agen_name!r} awaited something "
                            "during finalization; install a finalization hook to "
                            "support this, or wrap it in 'async with aclosing(...):'",
                        )

        self.prev_hooks = sys.get_asyncgen_hooks()
        # typeshed wants AsyncGenerator callbacks; the hooks only ever get
        # real async generator objects.
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)  # type: ignore[arg-type]

    async def finalize_remaining(self, runner: Runner) -> None:
        # Called by the init task once the system nursery is closed: only the
        # init task and the entry task are left, and no user code can spawn.
        assert GLOBAL_RUN_CONTEXT.task is runner.init_task
        assert len(runner.tasks) == 2
        self.alive = set(self.alive)
        # Let pending run_sync_soon callbacks (finalizers that arrived just in
        # time) run before we look.
        assert runner.init_task is not None
        runner.entry_queue.run_sync_soon(runner.reschedule, runner.init_task)
        await wait_task_rescheduled(lambda _: Abort.FAILED)
        self.alive.update(self.trailing_needs_finalize)
        self.trailing_needs_finalize.clear()
        # Every remaining generator is suspended at a yield (nobody is
        # iterating). Close them one at a time: closing one may iterate
        # another, and cleanup code may create new ones.
        while self.alive:
            batch = self.alive
            self.alive = set()
            for agen in batch:
                await self._finalize_one(agen, name_asyncgen(agen))

    def close(self) -> None:
        if self.prev_hooks is not None:
            sys.set_asyncgen_hooks(*self.prev_hooks)

    async def _finalize_one(self, agen: _AGen, name: object) -> None:
        from ._cancel import CancelScope

        try:
            # Shielded and cancelled: aclose() cannot block, and nothing
            # escapes, not even Cancelled.
            with CancelScope(shield=True) as cancel_scope:
                cancel_scope.cancel(
                    reason="disallow async work when closing async generators during corral shutdown"
                )
                await agen.aclose()
        except BaseException:
            ASYNCGEN_LOGGER.exception(
                "Exception ignored during finalization of async generator %r -- "
                "surround your use of the generator in 'async with aclosing(...):' "
                "to raise exceptions like this in the context where they're generated",
                name,
            )
