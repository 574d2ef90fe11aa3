"""Cancel at every checkpoint: count a scenario's sites, then cancel at each.

The first run of a scenario on a backend cancels nothing and records every
site it reaches (:mod:`._injector`). Then the scenario is run once per site
``k``, cancelling at site ``k`` only. A scenario is deterministic enough for
this when, with the same seed and backend, it reaches the same sites in the
same order up to ``k``: everything corral schedules is (FIFO run queue,
seeded fake kernel); a real kernel may complete an operation one turn
earlier or later, so on io_uring and epoll the site actually cancelled is
recorded with the run (``RunRecord.injected``) and reported as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._injector import SITE_KINDS, CancelSite
from ._report import CancelLabReport
from ._runner import RunRecord, Scenario, available_backends, run_once


def scenario_name(scenario: object) -> str:
    """``module.qualname`` of a scenario function (for reports)."""
    module = getattr(scenario, "__module__", None) or "?"
    name = getattr(scenario, "__qualname__", None) or repr(scenario)
    return f"{module}.{name}"


def _targets(sites: Sequence[CancelSite], kinds: Sequence[str]) -> list[CancelSite]:
    # A scenario that marks regions is only cancelled inside them.
    if any(site.region == "region" for site in sites):
        sites = [site for site in sites if site.region == "region"]
    return [site for site in sites if site.kind in kinds]


def _spread(sites: list[CancelSite], limit: int | None) -> list[CancelSite]:
    if limit is None or len(sites) <= limit:
        return sites
    # Evenly spaced, first and last included: bounded runs still see the
    # start, the middle and the end of the scenario.
    if limit <= 1:
        return sites[:limit]
    step = (len(sites) - 1) / (limit - 1)
    return [sites[round(i * step)] for i in range(limit)]


def cancel_at_every_checkpoint(
    scenario: Scenario,
    *,
    backends: Sequence[str] | None = None,
    seed: int = 0,
    kinds: Sequence[str] = SITE_KINDS,
    max_sites: int | None = None,
    autojump: bool = False,
    buffer_size: int = 4096,
    buffers: int = 64,
) -> CancelLabReport:
    """Run ``scenario`` once per site, cancelling at that site.

    ``scenario`` is ``async def scenario(lab: CancelLab)``. It runs in a
    fresh ``corral.run`` each time, with debug canaries on, on each backend
    of ``backends`` (default: every backend available here, see
    :func:`available_backends`). If the scenario marks regions with
    ``lab.cancellable()``, only sites inside regions are cancelled (the
    region's scope is cancelled; the scenario continues after it);
    otherwise the lab cancels the whole scenario at each site.

    After each run the lab checks the scenario's own assertions and checks
    (``lab.check``), every :class:`ByteStreamChecker`, and the runtime: no
    operation in flight, no pool lease held, no task left, no file
    descriptor leaked, no canary violation.

    Args:
      seed: passed to ``lab.seed`` / ``lab.rng`` and the fake kernel.
      kinds: which site kinds to cancel at (``"step"``, ``"trap"``,
        ``"in_flight"``).
      max_sites: cancel at most this many sites per backend, evenly spread
        (for bounded CI runs); ``None``: all of them.
      autojump: run with ``MockClock(autojump_threshold=0)``.
      buffer_size, buffers: the ring pool's geometry.

    Returns:
      A :class:`CancelLabReport` with one record per run (the counting run
      first). It does not raise for failures: call
      :meth:`CancelLabReport.raise_for_failures`.
    """
    report = CancelLabReport(
        scenario_name(scenario),
        "checkpoints",
        replay_hint=(
            "corral.testing.replay_cancellation("
            f"{getattr(scenario, '__qualname__', 'scenario')}, backend={{backend!r}}, "
            "seed={seed}, sites={sites}" + (", autojump=True" if autojump else "") + ")"
        ),
    )
    options: dict[str, Any] = {"autojump": autojump, "buffer_size": buffer_size, "buffers": buffers}
    for backend in available_backends() if backends is None else backends:
        dry = run_once(scenario, backend=backend, seed=seed, record=True, **options)
        report.add(dry)
        if not dry.ok:
            # The scenario fails without any cancellation: nothing more to
            # learn from cancelling it.
            continue
        for site in _spread(_targets(dry.recorded_sites, kinds), max_sites):
            report.add(_run_at(scenario, backend, seed, site.index, options))
    return report


def _run_at(
    scenario: Scenario, backend: str, seed: int, index: int, options: dict[str, Any]
) -> RunRecord:
    return run_once(
        scenario,
        backend=backend,
        seed=seed,
        decide=lambda i, kind, region: i == index,
        max_injections=1,
        **options,
    )


def replay_cancellation(
    scenario: Scenario,
    *,
    backend: str,
    seed: int = 0,
    sites: Sequence[int] = (),
    autojump: bool = False,
    buffer_size: int = 4096,
    buffers: int = 64,
) -> RunRecord:
    """Re-run one lab run: ``scenario`` on ``backend`` with ``seed``,
    cancelling at the site numbers in ``sites`` (what a failure report
    prints). Returns its :class:`RunRecord`.

    Raises:
      CancelLabFailure: the run broke an invariant (chained to the
        scenario's own exception, so a debugger can start from it).
    """
    wanted = frozenset(sites)
    record = run_once(
        scenario,
        backend=backend,
        seed=seed,
        decide=lambda i, kind, region: i in wanted,
        autojump=autojump,
        buffer_size=buffer_size,
        buffers=buffers,
    )
    report = CancelLabReport(scenario_name(scenario), "replay", [record])
    report.raise_for_failures()
    return record
