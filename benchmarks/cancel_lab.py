"""The cancel-safety lab's long run: >= 10,000 cancellations per backend.

Runs corral's own lab scenarios (echo, accept flood, file read/write, TLS
over TCP) on every backend available here: first cancelling at every site
of each scenario, then in seeded random mode until the backend has taken at
least ``--cancellations`` injected cancellations. Prints the per-backend
table of ``docs/cancel-safety.md`` and the first failures, if any.

    .venv/bin/python benchmarks/cancel_lab.py [--cancellations 10000] [--seed 0]

Every column but "runs" and "cancellations injected" must be 0.
"""

from __future__ import annotations

import argparse
import sys
import time

from corral.testing import CancelLabReport, cancel_at_every_checkpoint, cancel_randomly
from corral.testing._cancel_lab._runner import available_backends
from corral.testing._cancel_lab._scenarios import SCENARIOS


def long_run(backend: str, target: int, seed: int, batch: int) -> CancelLabReport:
    report = CancelLabReport("corral scenarios", "checkpoints + random")
    for scenario in SCENARIOS.values():
        report.extend(cancel_at_every_checkpoint(scenario, backends=[backend], seed=seed))
    round_seed = seed
    while report.cancellations < target:
        for scenario in SCENARIOS.values():
            report.extend(
                cancel_randomly(
                    scenario,
                    backends=[backend],
                    seed=round_seed,
                    iterations=batch,
                    probability=0.25,
                )
            )
        round_seed += batch
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cancellations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--backend", action="append", help="default: every backend here")
    args = parser.parse_args()
    total = CancelLabReport("corral scenarios", "checkpoints + random")
    for backend in args.backend or available_backends():
        start = time.perf_counter()
        report = long_run(backend, args.cancellations, args.seed, args.batch)
        print(
            f"{backend}: {len(report.runs)} runs, {report.cancellations} cancellations "
            f"in {time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )
        total.extend(report)
    print(total.table())
    for run in total.failures[:5]:
        print()
        print(total.describe_failure(run))
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
