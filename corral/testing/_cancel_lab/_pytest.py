"""The pytest entry point: ``@corral.testing.cancel_lab(...)``.

Applied to ``async def test_x(lab, ...)``, it turns the scenario into one
ordinary (synchronous) pytest test per backend, each running the whole lab
session and failing with the lab's report. Other parameters of the scenario
are pytest fixtures, passed through.

Replaying: the environment variable ``CORRAL_CANCEL_LAB_REPLAY`` set to
``backend:seed:k1,k2,...`` makes every decorated test run only that one
injection (``k`` list may be empty), for a debugger or a bisect.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ._checkpoints import cancel_at_every_checkpoint, replay_cancellation
from ._random import cancel_randomly
from ._runner import CancelLab, available_backends

ENV_REPLAY = "CORRAL_CANCEL_LAB_REPLAY"

F = TypeVar("F", bound=Callable[..., Awaitable[object]])


def _parse_replay(value: str) -> tuple[str, int, list[int]]:
    try:
        backend, seed, sites = value.split(":")
        return backend, int(seed), [int(k) for k in sites.split(",") if k.strip()]
    except ValueError:
        raise ValueError(
            f"{ENV_REPLAY} must look like 'backend:seed:k1,k2', not {value!r}"
        ) from None


def cancel_lab(
    *,
    backends: Sequence[str] | None = None,
    mode: str = "checkpoints",
    seed: int = 0,
    max_sites: int | None = None,
    iterations: int = 50,
    probability: float = 0.05,
    autojump: bool = False,
    buffer_size: int = 4096,
    buffers: int = 64,
) -> Callable[[F], Callable[..., None]]:
    """Decorator: run an async scenario under the cancel-safety lab in pytest.

    ::

        @corral.testing.cancel_lab(max_sites=200)
        async def test_echo_survives_cancellation(lab):
            ...

    The scenario's first parameter receives the :class:`CancelLab`; the
    others are fixtures. The test is parametrized over ``backends`` (default:
    every backend available, :func:`available_backends`), and fails with a
    :exc:`CancelLabFailure` naming the site, the task, the operation in
    flight and the replay call of each failed run.

    Args:
      mode: ``"checkpoints"`` (:func:`cancel_at_every_checkpoint`, bounded
        by ``max_sites``) or ``"random"`` (:func:`cancel_randomly` with
        ``iterations`` and ``probability``).
      seed, autojump, buffer_size, buffers: as for the lab functions.
    """
    if mode not in ("checkpoints", "random"):
        raise ValueError(f"mode must be 'checkpoints' or 'random', not {mode!r}")

    def decorate(scenario: F) -> Callable[..., None]:
        import pytest

        params = list(inspect.signature(scenario).parameters.values())
        if not params:
            raise TypeError(f"{scenario.__qualname__} must take the lab as its first parameter")
        fixtures = params[1:]

        def test(cancel_lab_backend: str, **kwargs: Any) -> None:
            bound = functools.partial(_call, scenario, kwargs)
            functools.update_wrapper(bound, scenario)
            replay = os.environ.get(ENV_REPLAY)
            if replay:
                backend, run_seed, sites = _parse_replay(replay)
                if backend != cancel_lab_backend:
                    pytest.skip(f"{ENV_REPLAY} replays backend {backend!r}")
                replay_cancellation(
                    bound,
                    backend=backend,
                    seed=run_seed,
                    sites=sites,
                    autojump=autojump,
                    buffer_size=buffer_size,
                    buffers=buffers,
                )
                return
            if mode == "checkpoints":
                report = cancel_at_every_checkpoint(
                    bound,
                    backends=[cancel_lab_backend],
                    seed=seed,
                    max_sites=max_sites,
                    autojump=autojump,
                    buffer_size=buffer_size,
                    buffers=buffers,
                )
            else:
                report = cancel_randomly(
                    bound,
                    backends=[cancel_lab_backend],
                    seed=seed,
                    iterations=iterations,
                    probability=probability,
                    autojump=autojump,
                    buffer_size=buffer_size,
                    buffers=buffers,
                )
            report.raise_for_failures()

        test.__name__ = scenario.__name__
        test.__qualname__ = scenario.__qualname__
        test.__module__ = scenario.__module__
        test.__doc__ = scenario.__doc__
        test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter("cancel_lab_backend", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixtures),
            ]
        )
        chosen = list(available_backends() if backends is None else backends)
        marked: Callable[..., None] = pytest.mark.parametrize("cancel_lab_backend", chosen)(test)
        return marked

    return decorate


async def _call(
    scenario: Callable[..., Awaitable[object]], kwargs: dict[str, Any], lab: CancelLab
) -> None:
    await scenario(lab, **kwargs)
