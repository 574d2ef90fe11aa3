"""Instrument dispatch: which instruments to call for which hook.

Instruments are kept per hook, and a hook with no instrument has no key, so
the hot paths pay only ``if runner.instruments`` (an empty dict is falsy)
when nothing is installed.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Sequence

from .._abc import Instrument
from ._run_context import GLOBAL_RUN_CONTEXT

#: Where an instrument's crash is logged (it is then removed).
INSTRUMENT_LOGGER = logging.getLogger("corral.abc.Instrument")


class Instruments(dict[str, dict[Instrument, None]]):
    """Maps each hook name to the instruments (insertion-ordered) that
    implement it. Empty (falsy) when no instrument is installed; the set of
    all installed instruments is kept separately."""

    __slots__ = ("_all",)

    def __init__(self, incoming: Sequence[Instrument] = ()) -> None:
        super().__init__()
        self._all: dict[Instrument, None] = {}
        for instrument in incoming:
            self.add_instrument(instrument)

    def add_instrument(self, instrument: Instrument) -> None:
        """Start calling ``instrument``'s hooks (no-op if already active)."""
        if instrument in self._all:
            return
        self._all[instrument] = None
        try:
            for name in dir(instrument):
                if name.startswith("_"):
                    continue
                try:
                    prototype = getattr(Instrument, name)
                except AttributeError:
                    continue
                impl = getattr(instrument, name)
                if isinstance(impl, types.MethodType) and impl.__func__ is prototype:
                    continue  # inherited no-op: never call it
                self.setdefault(name, {})[instrument] = None
        except BaseException:
            self.remove_instrument(instrument)
            raise

    def remove_instrument(self, instrument: Instrument) -> None:
        """Stop calling ``instrument``'s hooks.

        Raises:
          KeyError: it is not active (never added, or removed after it
            crashed).
        """
        del self._all[instrument]
        for hookname, instruments in list(self.items()):
            if instrument in instruments:
                del instruments[instrument]
                if not instruments:
                    del self[hookname]

    def call(self, hookname: str, *args: object) -> None:
        """Call ``hookname(*args)`` on every instrument that implements it.
        An instrument that raises is removed and the error is logged."""
        instruments = self.get(hookname)
        if not instruments:
            return
        for instrument in list(instruments):
            try:
                getattr(instrument, hookname)(*args)
            except BaseException:
                self.remove_instrument(instrument)
                INSTRUMENT_LOGGER.exception(
                    "Exception raised when calling %r on instrument %r. "
                    "Instrument has been disabled.",
                    hookname,
                    instrument,
                )


def _runner_instruments() -> Instruments:
    try:
        return GLOBAL_RUN_CONTEXT.runner.instruments
    except AttributeError:
        raise RuntimeError("must be called from async context") from None


def add_instrument(instrument: Instrument) -> None:
    """Start instrumenting the current run with ``instrument`` (no-op if it
    is already active).

    Raises:
      RuntimeError: outside a run.
    """
    _runner_instruments().add_instrument(instrument)


def remove_instrument(instrument: Instrument) -> None:
    """Stop instrumenting the current run with ``instrument``.

    Raises:
      KeyError: it is not active (never added, or disabled after raising).
      RuntimeError: outside a run.
    """
    _runner_instruments().remove_instrument(instrument)
