"""Randomized mode: seeded random cancellations and deadlines, many runs.

For scenarios too long to cancel at every site. Iteration ``i`` of a session
with seed ``S`` is an independent run with seed ``S + i``: its cancellation
sites are chosen by a generator seeded with ``S + i`` alone, so the failure
report's seed replays that one run (``cancel_randomly(..., seed=S + i,
iterations=1)``) without the iterations before it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from math import inf

from ._checkpoints import scenario_name
from ._report import CancelLabReport
from ._runner import Scenario, available_backends, run_once


def _decider(run_seed: int, probability: float, regions: bool) -> Callable[[int, str, str], bool]:
    rng = random.Random(f"corral-cancel-lab:{run_seed}")

    def decide(index: int, kind: str, region: str) -> bool:
        if regions and region != "region":
            return False
        return rng.random() < probability

    return decide


def _deadlines(run_seed: int, probability: float, longest: float) -> Callable[[], float] | None:
    if probability <= 0:
        return None
    rng = random.Random(f"corral-cancel-lab-deadlines:{run_seed}")

    def policy() -> float:
        return rng.uniform(0, longest) if rng.random() < probability else inf

    return policy


def cancel_randomly(
    scenario: Scenario,
    *,
    backends: Sequence[str] | None = None,
    seed: int = 0,
    iterations: int = 100,
    probability: float = 0.05,
    max_per_run: float = inf,
    deadline_probability: float = 0.0,
    longest_deadline: float = 0.01,
    autojump: bool = False,
    buffer_size: int = 4096,
    buffers: int = 64,
) -> CancelLabReport:
    """Run ``scenario`` ``iterations`` times per backend, cancelling at
    random sites.

    At every site of every run the lab cancels with ``probability`` (at most
    ``max_per_run`` times per run; a scenario that loops over
    ``lab.cancellable()`` regions can take many cancellations per run). With
    ``deadline_probability`` > 0, each new region also gets, with that
    probability, a relative deadline drawn uniformly from ``[0,
    longest_deadline]`` seconds (deterministic with ``autojump=True``).

    The invariants checked after each run are those of
    :func:`cancel_at_every_checkpoint`. Returns a :class:`CancelLabReport`
    (does not raise for failures). Each run's seed is ``seed + i``; replay a
    failed run with ``cancel_randomly(scenario, backends=[backend],
    seed=<its seed>, iterations=1, probability=...)``.
    """
    if not 0 <= probability <= 1:
        raise ValueError(f"probability must be in [0, 1], not {probability!r}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, not {iterations!r}")
    report = CancelLabReport(
        scenario_name(scenario),
        "random",
        replay_hint=(
            f"corral.testing.cancel_randomly({getattr(scenario, '__qualname__', 'scenario')}, "
            "backends=[{backend!r}], seed={seed}, iterations=1, "
            f"probability={probability!r}"
            + (f", deadline_probability={deadline_probability!r}" if deadline_probability else "")
            + (", autojump=True" if autojump else "")
            + ")"
        ),
    )
    for backend in available_backends() if backends is None else backends:
        # One counting run tells whether the scenario marks regions.
        dry = run_once(
            scenario,
            backend=backend,
            seed=seed,
            record=True,
            autojump=autojump,
            buffer_size=buffer_size,
            buffers=buffers,
        )
        if not dry.ok:
            report.add(dry)
            continue
        regions = any(site.region == "region" for site in dry.recorded_sites)
        for i in range(iterations):
            run_seed = seed + i
            report.add(
                run_once(
                    scenario,
                    backend=backend,
                    seed=run_seed,
                    decide=_decider(run_seed, probability, regions),
                    max_injections=max_per_run,
                    autojump=autojump,
                    buffer_size=buffer_size,
                    buffers=buffers,
                    deadline_policy=_deadlines(run_seed, deadline_probability, longest_deadline),
                )
            )
    return report
