"""Deprecation warnings, worded as Trio words them.

corral exports no warning class of its own (Trio's ``TrioDeprecationWarning``
is not ported, see ``tests/test_exports.py``), so deprecations are plain
:class:`DeprecationWarning`\\ s. They point at the first frame outside the
``corral`` package, so that the user's line is blamed (and Python's default
filter shows the warning when that line is in ``__main__``), however many
corral layers the call went through (``corral.run`` -> ``corral._core.run``).
"""

from __future__ import annotations

import sys
import warnings

#: Where Trio explains strict exception groups and why the loose mode goes.
_STRICT_GROUPS_ADVICE = (
    "the default value of True and rewrite exception handlers to handle ExceptionGroups. "
    "See https://trio.readthedocs.io/en/stable/reference-core.html#designing-for-multiple-errors"
)
_STRICT_GROUPS_ISSUE = "https://github.com/python-trio/trio/issues/2929"

#: corral has had these deprecated from its first release.
_SINCE = "0.1.0"


def _stacklevel_outside_corral() -> int:
    # Level 1 is our caller; count frames until one is not corral's own.
    level = 1
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "corral" and not module.startswith("corral."):
            return level
        frame = frame.f_back  # type: ignore[assignment]  # None ends the loop
        level += 1
    return level


def warn_deprecated(thing: str, *, instead: str, url: str) -> None:
    """Warn that ``thing`` is deprecated, in Trio's words: "``thing`` is
    deprecated since corral <version>; use ``instead`` instead (``url``)"."""
    warnings.warn(
        DeprecationWarning(f"{thing} is deprecated since corral {_SINCE}; use {instead} instead ({url})"),
        stacklevel=_stacklevel_outside_corral(),
    )


def warn_loose_exception_groups(thing: str) -> None:
    """The warning for ``strict_exception_groups=False`` given to ``thing``
    (Trio deprecated it in 0.25.0, python-trio/trio#2929)."""
    warn_deprecated(thing, instead=_STRICT_GROUPS_ADVICE, url=_STRICT_GROUPS_ISSUE)
