"""The thread-local that says which run (and which task) is current.

Kept in its own tiny module so that every other ``_core`` module can import it
without import cycles. ``GLOBAL_RUN_CONTEXT.runner`` exists exactly while a
run is active in this thread; ``GLOBAL_RUN_CONTEXT.task`` exists exactly while
a task is being stepped.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._run import Runner
    from ._task import Task


class _RunContext(threading.local):
    runner: Runner
    task: Task


GLOBAL_RUN_CONTEXT = _RunContext()
