"""RunVar: a variable with one value per run (shared by all its tasks)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from ._exceptions import _NoPublicConstructor
from ._run_context import GLOBAL_RUN_CONTEXT

T = TypeVar("T")


class _NoValue:
    """Sentinel: no value / no default."""


class RunVarToken(Generic[T], metaclass=_NoPublicConstructor):
    """Returned by :meth:`RunVar.set`; pass it to :meth:`RunVar.reset` to
    restore the previous value (once)."""

    __slots__ = ("_var", "previous_value", "redeemed")

    def __init__(self, var: RunVar[T], previous_value: Any = _NoValue) -> None:
        self._var = var
        #: The value before the ``set()`` (``RunVarToken.MISSING``-like
        #: sentinel if there was none).
        self.previous_value = previous_value
        #: Whether the token has been used by :meth:`RunVar.reset`.
        self.redeemed = False


class RunVar(Generic[T]):
    """Like a :class:`contextvars.ContextVar`, but its value is shared by the
    whole run rather than by one task (``corral.lowlevel.RunVar``).

    Every method raises :exc:`RuntimeError` outside a run.
    """

    __slots__ = ("_default", "_name")

    def __init__(self, name: str, default: T | type[_NoValue] = _NoValue) -> None:
        self._name = name
        self._default = default

    def get(self, default: T | type[_NoValue] = _NoValue) -> T:
        """Return the value in the current run, else ``default``, else the
        variable's default.

        Raises:
          LookupError: no value and no default.
          RuntimeError: outside a run.
        """
        try:
            return cast("T", GLOBAL_RUN_CONTEXT.runner._locals[self])
        except AttributeError:
            raise RuntimeError("Cannot be used outside of a run context") from None
        except KeyError:
            if default is not _NoValue:
                return cast("T", default)
            if self._default is not _NoValue:
                return cast("T", self._default)
            raise LookupError(self) from None

    def set(self, value: T) -> RunVarToken[T]:
        """Set the value for the current run; return a token for
        :meth:`reset`.

        Raises:
          RuntimeError: outside a run.
        """
        try:
            old_value = self.get()
        except LookupError:
            token: RunVarToken[T] = RunVarToken._create(self)
        else:
            token = RunVarToken._create(self, old_value)
        # Cannot fail: get() above would have raised outside a run.
        GLOBAL_RUN_CONTEXT.runner._locals[self] = value
        return token

    def reset(self, token: RunVarToken[T]) -> None:
        """Restore the value from before the ``set()`` that returned
        ``token``.

        Raises:
          TypeError: ``token`` is None.
          ValueError: the token was already used, or belongs to another
            RunVar.
          RuntimeError: outside a run.
        """
        if token is None:
            raise TypeError("token must not be none")
        if token.redeemed:
            raise ValueError("token has already been used")
        if token._var is not self:
            raise ValueError("token is not for us")
        previous = token.previous_value
        try:
            if previous is _NoValue:
                GLOBAL_RUN_CONTEXT.runner._locals.pop(self)
            else:
                GLOBAL_RUN_CONTEXT.runner._locals[self] = previous
        except AttributeError:
            raise RuntimeError("Cannot be used outside of a run context") from None
        token.redeemed = True

    def __repr__(self) -> str:
        return f"<RunVar name={self._name!r}>"
