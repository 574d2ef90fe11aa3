"""Tools for testing code that runs on corral (Trio's ``trio.testing``).

This module only re-exports; each name's home is given in ``docs/internals.md``.
The pytest plugin (``corral.testing._pytest_plugin``) is loaded by pytest
through corral's ``pytest11`` entry point, not imported from here.
"""

from __future__ import annotations

from .._util import fixup_module_metadata as _fixup_module_metadata

# --- clocks and scheduling (corral/testing/_mock_clock.py, corral/_core) ---
from .._core import wait_all_tasks_blocked as wait_all_tasks_blocked
from ._mock_clock import MockClock as MockClock

# --- checkpoints, sequencing, test decorators (corral/testing) -----------
from ._checkpoints import (
    assert_checkpoints as assert_checkpoints,
    assert_no_checkpoints as assert_no_checkpoints,
)
from ._corral_fixture import corral_fixture as corral_fixture
from ._corral_test import corral_test as corral_test, trio_test as trio_test
from ._sequencer import Sequencer as Sequencer

# --- threads (corral/_threads.py) ---------------------------------------
from .._threads import (
    active_thread_count as active_thread_count,
    wait_all_threads_completed as wait_all_threads_completed,
)

# --- completion core (corral/_io/fake.py) ---------------------------------
from .._io.fake import FakeKernel as FakeKernel

# --- memory streams, stream conformance suites (corral/testing) ---------
from ._check_streams import (
    check_half_closeable_stream as check_half_closeable_stream,
    check_one_way_stream as check_one_way_stream,
    check_two_way_stream as check_two_way_stream,
)
from ._memory_streams import (
    MemoryReceiveStream as MemoryReceiveStream,
    MemorySendStream as MemorySendStream,
    lockstep_stream_one_way_pair as lockstep_stream_one_way_pair,
    lockstep_stream_pair as lockstep_stream_pair,
    memory_stream_one_way_pair as memory_stream_one_way_pair,
    memory_stream_pair as memory_stream_pair,
    memory_stream_pump as memory_stream_pump,
)

# --- high-level networking (corral/testing/_network.py) -------------------
from ._network import open_stream_to_socket_listener as open_stream_to_socket_listener

# --- cancel lab (corral/testing/_cancel_lab) ------------------------------
from ._cancel_lab import (
    BackendTotals as BackendTotals,
    ByteStreamChecker as ByteStreamChecker,
    CancelLab as CancelLab,
    CancelLabFailure as CancelLabFailure,
    CancelLabReport as CancelLabReport,
    CancelSite as CancelSite,
    LoopbackKernel as LoopbackKernel,
    RunRecord as RunRecord,
    StreamStatistics as StreamStatistics,
    available_backends as cancel_lab_backends,  # noqa: F401 - public under this name
    cancel_at_every_checkpoint as cancel_at_every_checkpoint,
    cancel_lab as cancel_lab,
    cancel_randomly as cancel_randomly,
    explore_races as explore_races,
    fd_census as fd_census,
    race_schedules as race_schedules,
    replay_cancellation as replay_cancellation,
)

# --- end of sections -----------------------------------------------------

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
