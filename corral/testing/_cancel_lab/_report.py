"""Reports: what a lab session found, per backend, and how to replay it."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._runner import RunRecord

#: The figures of the per-backend table, in column order.
TABLE_COLUMNS = (
    "runs",
    "cancellations injected",
    "lost bytes",
    "duplicated bytes",
    "corrupted bytes",
    "canary violations",
    "leaked leases",
    "leaked fds",
    "leaked ops",
    "leaked tasks",
    "failed runs",
)


class CancelLabFailure(AssertionError):
    """A lab run broke an invariant. The message names the backend, the
    seed, the site(s) where the lab cancelled (task, frame, operation in
    flight) and the call that replays the run."""


@attrs.frozen
class BackendTotals:
    """One row of :meth:`CancelLabReport.table`.

    Every attribute but ``runs`` and ``cancellations`` must be 0 for corral
    to keep its promises (``docs/cancel-safety.md``).
    """

    backend: str
    runs: int
    cancellations: int
    lost_bytes: int
    duplicated_bytes: int
    corrupted_bytes: int
    canary_violations: int
    leaked_leases: int
    leaked_fds: int
    leaked_ops: int
    leaked_tasks: int
    failed_runs: int

    def cells(self) -> tuple[int, ...]:
        """The figures in :data:`TABLE_COLUMNS` order."""
        return (
            self.runs,
            self.cancellations,
            self.lost_bytes,
            self.duplicated_bytes,
            self.corrupted_bytes,
            self.canary_violations,
            self.leaked_leases,
            self.leaked_fds,
            self.leaked_ops,
            self.leaked_tasks,
            self.failed_runs,
        )


@attrs.define
class CancelLabReport:
    """Every run of a lab session.

    Attributes:
      scenario: the scenario's name.
      mode: ``"checkpoints"``, ``"random"`` or ``"races"``.
      runs: one :class:`RunRecord` per run, in order.
      replay_hint: how to replay one run, with ``{backend}``, ``{seed}`` and
        ``{sites}`` placeholders.
    """

    scenario: str
    mode: str
    runs: list[RunRecord] = attrs.Factory(list)
    replay_hint: str = ""

    def add(self, record: RunRecord) -> None:
        """Append one run."""
        self.runs.append(record)

    def extend(self, other: CancelLabReport) -> None:
        """Append another report's runs."""
        self.runs.extend(other.runs)

    @property
    def failures(self) -> list[RunRecord]:
        """The runs that broke an invariant."""
        return [run for run in self.runs if not run.ok]

    @property
    def cancellations(self) -> int:
        """Cancellations injected over all runs."""
        return sum(len(run.injected) for run in self.runs)

    def totals(self) -> list[BackendTotals]:
        """Per-backend totals, in the order backends first appear."""
        order: list[str] = []
        for run in self.runs:
            if run.backend not in order:
                order.append(run.backend)
        return [_totals(b, [r for r in self.runs if r.backend == b]) for b in order]

    def table(self) -> str:
        """The per-backend table as Markdown."""
        head = "| backend | " + " | ".join(TABLE_COLUMNS) + " |"
        rule = "|---" * (len(TABLE_COLUMNS) + 1) + "|"
        rows = [
            f"| {t.backend} | " + " | ".join(str(c) for c in t.cells()) + " |"
            for t in self.totals()
        ]
        return "\n".join([head, rule, *rows])

    def describe_failure(self, run: RunRecord) -> str:
        """A failure report: what broke, where the lab cancelled, how to
        replay it."""
        lines = [
            f"corral cancel lab: scenario {self.scenario} failed on backend "
            f"{run.backend!r} (seed {run.seed}, {self.mode} mode)",
            f"  what broke: {run.failure}",
        ]
        if run.schedule is not None:
            lines.append(f"  ordering: {run.schedule}")
        if run.injected:
            lines.extend(f"  cancelled at {site.describe()}" for site in run.injected)
        else:
            lines.append("  with no cancellation injected (the scenario fails on its own)")
        sites = [site.index for site in run.injected]
        if self.replay_hint:
            lines.append(
                "  replay: "
                + self.replay_hint.format(backend=run.backend, seed=run.seed, sites=sites)
            )
        return "\n".join(lines)

    def raise_for_failures(self, limit: int = 3) -> None:
        """Raise :exc:`CancelLabFailure` describing the first ``limit``
        failed runs (and how many failed in all), if any did."""
        failures = self.failures
        if not failures:
            return
        parts = [self.describe_failure(run) for run in failures[:limit]]
        more = len(failures) - limit
        if more > 0:
            parts.append(f"... and {more} more failed run(s) out of {len(self.runs)}")
        else:
            parts.append(f"{len(failures)} failed run(s) out of {len(self.runs)}")
        error = CancelLabFailure("\n".join(parts))
        raise error from failures[0].error


def _totals(backend: str, runs: Iterable[RunRecord]) -> BackendTotals:
    runs = list(runs)
    return BackendTotals(
        backend=backend,
        runs=len(runs),
        cancellations=sum(len(r.injected) for r in runs),
        lost_bytes=sum(r.lost_bytes for r in runs),
        duplicated_bytes=sum(r.duplicated_bytes for r in runs),
        corrupted_bytes=sum(r.corrupted_bytes for r in runs),
        canary_violations=sum(r.canary_violations for r in runs),
        leaked_leases=sum(len(r.leaked_leases) for r in runs),
        leaked_fds=sum(len(r.leaked_fds) for r in runs),
        leaked_ops=sum(len(r.leaked_ops) for r in runs),
        leaked_tasks=sum(r.leaked_tasks for r in runs),
        failed_runs=sum(1 for r in runs if not r.ok),
    )
