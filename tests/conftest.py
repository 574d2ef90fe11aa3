"""Shared test configuration.

``async def`` tests and async fixtures run inside ``corral.run`` through
corral's own pytest plugin (``corral/testing/_pytest_plugin.py``, loaded by
its pytest11 entry point; ``corral_mode = true`` in pyproject.toml), with
pytest-trio's model: one run per test, fixtures as sibling tasks, and the
``autojump_clock`` / ``mock_clock`` / ``nursery`` fixtures.
"""
