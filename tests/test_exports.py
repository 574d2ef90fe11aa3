"""The public surface: every public name of Trio exists in corral (under
corral's name where Trio's carries "trio"), and public objects report their
public module.

Names that belong to work not yet landed are listed in PENDING with the issue
that brings them; the list only shrinks.
"""

from __future__ import annotations

import importlib
import types

import pytest

trio = pytest.importorskip("trio")

MODULES = ["", ".abc", ".lowlevel", ".testing", ".to_thread", ".from_thread"]

# Trio's names that corral spells with its own name. The Trio spelling is
# also provided, as an alias, wherever a ported program could use it.
RENAMED = {
    "TrioInternalError": "CorralInternalError",
    "TrioToken": "CorralToken",
    "current_trio_token": "current_corral_token",
    "in_trio_run": "in_corral_run",
    "in_trio_task": "in_corral_task",
    "trio_test": "corral_test",
}

# Not Trio programs' business, or deliberately absent.
NOT_PORTED = {
    "TrioDeprecationWarning",  # Trio's deprecation machinery
    "annotations",  # a __future__ import leaking into trio's namespace
    "UnboundedQueue",  # deprecated in Trio
    "UnboundedQueueStatistics",
    "RaiseCancelT",  # a typing alias of a deprecated abort-fn signature
}

# Names whose issue has not landed yet: issue number -> names.
PENDING = {
    4: {"DTLSChannel", "DTLSChannelStatistics", "DTLSEndpoint",
        "FdStream"},
    # Trio's Windows-only low-level API (its IOCP hooks and a handle wait)
    6: {"WaitForSingleObject", "current_iocp", "monitor_completion_key",
        "readinto_overlapped", "register_with_iocp", "wait_overlapped",
        "write_overlapped"},
    # processes and signals have no issue yet
    0: {"Process", "run_process", "open_process", "open_signal_receiver"},
}
PENDING_NAMES = set().union(*PENDING.values())


def public_names(mod: types.ModuleType) -> set[str]:
    return {n for n in dir(mod) if not n.startswith("_") and not isinstance(getattr(mod, n), types.ModuleType)}


@pytest.mark.parametrize("suffix", MODULES)
def test_every_trio_name_exists(suffix: str) -> None:
    trio_mod = importlib.import_module("trio" + suffix)
    corral_mod = importlib.import_module("corral" + suffix)
    missing = []
    for name in sorted(public_names(trio_mod)):
        if name in NOT_PORTED or name in PENDING_NAMES:
            continue
        ours = RENAMED.get(name, name)
        if not hasattr(corral_mod, ours):
            missing.append(ours)
    assert missing == []


@pytest.mark.parametrize("suffix", MODULES)
def test_pending_names_are_really_pending(suffix: str) -> None:
    # When an issue lands its names, they must leave PENDING.
    corral_mod = importlib.import_module("corral" + suffix)
    trio_mod = importlib.import_module("trio" + suffix)
    landed = sorted(
        n for n in public_names(trio_mod) & PENDING_NAMES if hasattr(corral_mod, n)
    )
    assert landed == []


@pytest.mark.parametrize("suffix", MODULES)
def test_public_objects_report_public_module(suffix: str) -> None:
    corral_mod = importlib.import_module("corral" + suffix)
    wrong = []
    for name in public_names(corral_mod):
        obj = getattr(corral_mod, name)
        mod = getattr(obj, "__module__", None)
        if isinstance(obj, type) and isinstance(mod, str) and mod.startswith("corral"):
            if any(part.startswith("_") for part in mod.split(".")):
                wrong.append(f"{name}: {mod}")
    assert wrong == []


def test_module_aliases_for_trio_names() -> None:
    import corral
    import corral.lowlevel

    assert corral.TrioInternalError is corral.CorralInternalError
    assert corral.lowlevel.TrioToken is corral.lowlevel.CorralToken
    assert corral.lowlevel.current_trio_token is corral.lowlevel.current_corral_token
