"""The cancel-safety lab (re-exports; public through :mod:`corral.testing`).

See ``docs/cancel-safety.md``. Modules: ``_injector`` (sites and the
instrument that cancels at them), ``_runner`` (one run, the census, the
scenario's handle), ``_checkpoints`` (cancel at every site), ``_random``
(seeded random mode), ``_races`` (the fake-kernel race explorer),
``_invariants`` (byte-exact stream checker, fd census), ``_loopback`` (the
fake kernel doing real I/O with seeded choices), ``_report``, ``_pytest``
(the decorator), ``_scenarios`` (corral's own scenarios).
"""

from ._checkpoints import (
    cancel_at_every_checkpoint as cancel_at_every_checkpoint,
)
from ._checkpoints import (
    replay_cancellation as replay_cancellation,
)
from ._injector import CancelSite as CancelSite
from ._invariants import (
    ByteStreamChecker as ByteStreamChecker,
)
from ._invariants import (
    StreamStatistics as StreamStatistics,
)
from ._invariants import (
    fd_census as fd_census,
)
from ._loopback import LoopbackKernel as LoopbackKernel
from ._pytest import cancel_lab as cancel_lab
from ._races import explore_races as explore_races
from ._races import race_schedules as race_schedules
from ._random import cancel_randomly as cancel_randomly
from ._report import (
    BackendTotals as BackendTotals,
)
from ._report import (
    CancelLabFailure as CancelLabFailure,
)
from ._report import (
    CancelLabReport as CancelLabReport,
)
from ._runner import (
    CancelLab as CancelLab,
)
from ._runner import (
    RunRecord as RunRecord,
)
from ._runner import (
    available_backends as available_backends,
)
