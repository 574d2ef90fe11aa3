"""corral's pytest plugin, driven through pytest's own ``pytester``.

Each test writes a small test module, runs pytest on it in-process (the
plugin is active through corral's pytest11 entry point) and checks the
outcomes and the report.
"""

from __future__ import annotations

import signal

import pytest

_needs_sigalrm = pytest.mark.skipif(
    not hasattr(signal, "SIGALRM"), reason="SIGALRM does not exist on Windows"
)

pytest_plugins = ["pytester"]


def run(pytester: pytest.Pytester, source: str, *, ini: str | None = None) -> pytest.RunResult:
    if ini is not None:
        pytester.makeini("[pytest]\n" + ini + "\n")
    pytester.makepyfile(source)
    return pytester.runpytest("-p", "no:cacheprovider")


CORRAL_MODE = "corral_mode = true"


# ---------------------------------------------------------------- basics


def test_marked_async_tests_run_in_corral(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, sniffio, corral

        ran = []

        @pytest.mark.corral
        async def test_pass():
            await corral.sleep(0)
            assert sniffio.current_async_library() == "corral"
            ran.append("pass")

        @pytest.mark.corral
        async def test_fail():
            await corral.sleep(0)
            assert 1 + 1 == 3

        def test_sync_after():
            assert ran == ["pass"]
        """,
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.re_match_lines([r"E\s+assert \(1 \+ 1\) == 3"])


def test_one_run_per_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        roots = []

        @pytest.mark.corral
        @pytest.mark.parametrize("i", range(3))
        async def test_root(i):
            roots.append(corral.lowlevel.current_root_task())

        def test_distinct_runs():
            assert len(roots) == 3 and len({id(r) for r in roots}) == 3
        """,
    )
    result.assert_outcomes(passed=4)


def test_test_task_looks_as_outside_pytest(pytester: pytest.Pytester) -> None:
    # No plugin nursery around the test body: introspection and exception
    # groups are what the test would see under a bare corral.run.
    result = run(
        pytester,
        """
        import pytest, corral

        @pytest.mark.corral
        async def test_plain():
            assert corral.lowlevel.current_task().child_nurseries == []

        @pytest.mark.corral
        async def test_with_nursery(nursery):
            assert corral.lowlevel.current_task().child_nurseries == [nursery]
        """,
    )
    result.assert_outcomes(passed=2)


def test_unmarked_async_test_is_left_to_pytest(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        async def test_unmarked():
            pass
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_corral_mode_needs_no_marker(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import corral, sniffio

        async def test_in_corral():
            await corral.sleep(0)
            assert sniffio.current_async_library() == "corral"

        def test_sync_untouched():
            assert 1 == 1
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=2)


def test_trio_marker_is_an_alias(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, sniffio

        @pytest.mark.trio
        async def test_ported_from_trio():
            assert sniffio.current_async_library() == "corral"
        """,
    )
    result.assert_outcomes(passed=1)


def test_trio_marker_is_left_to_pytest_trio_when_loaded(pytester: pytest.Pytester) -> None:
    # Stand-in for pytest-trio: any plugin registered under the name "trio".
    pytester.makeconftest(
        """
        class FakePytestTrio:
            pass

        def pytest_addhooks(pluginmanager):
            pluginmanager.register(FakePytestTrio(), "trio")
        """
    )
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.trio
        async def test_belongs_to_pytest_trio():
            pass

        @pytest.mark.corral
        async def test_still_corral():
            pass
        """,
    )
    # corral leaves the first alone, and pytest itself refuses it.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_marked_sync_test_is_an_error(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.corral
        def test_not_async():
            pass
        """,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test function `<Function test_not_async>` is marked corral but is not async*"])


def test_module_mark_leaves_sync_tests_alone(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        pytestmark = pytest.mark.corral

        @pytest.fixture
        def plain():
            return 1

        async def test_async(plain):
            await corral.sleep(0)
            assert plain == 1

        def test_sync(plain):
            assert plain == 1

        class TestGroup:
            def test_sync_method(self, plain):
                assert plain == 1
        """,
    )
    result.assert_outcomes(passed=3)


def test_parametrized_tests_and_fixtures(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        @pytest.fixture(params=[10, 20])
        async def base(request):
            await corral.sleep(0)
            return request.param

        @pytest.mark.parametrize("x", [1, 2, 3])
        async def test_param(base, x):
            await corral.sleep(0)
            assert base in (10, 20) and x in (1, 2, 3)
            assert (base + x) % 10 != 3
        """,
        ini=CORRAL_MODE,
    )
    # (10, 3) and (20, 3) fail; the four others pass.
    result.assert_outcomes(passed=4, failed=2)


def test_skip_and_xfail_from_inside_nurseries(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        async def call(fn, *args):
            fn(*args)

        async def test_skip():
            async with corral.open_nursery() as nursery:
                nursery.start_soon(call, pytest.skip, "skipped in a child")

        async def test_xfail():
            async with corral.open_nursery() as nursery:
                nursery.start_soon(call, pytest.xfail, "xfailed in a child")

        async def fail():
            raise RuntimeError("real failure")

        async def test_skip_and_fail():
            async with corral.open_nursery() as nursery:
                nursery.start_soon(call, pytest.skip, "not enough")
                nursery.start_soon(fail)
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(skipped=1, xfailed=1, failed=1)


def test_class_methods_and_method_fixtures(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        class TestThings:
            @pytest.fixture
            async def value(self):
                await corral.sleep(0)
                return self.__class__.__name__

            async def test_method(self, value):
                assert value == "TestThings"
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1)


# ---------------------------------------------------------------- fixtures


def test_nested_fixtures_set_up_and_tear_down_in_order(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        events = []

        @pytest.fixture
        async def leaf():
            events.append("leaf setup")
            await corral.sleep(0)
            yield "leaf"
            await corral.sleep(0)
            events.append("leaf teardown")

        @pytest.fixture
        def sync_middle(leaf):
            # Sync, but depends on a corral fixture: runs in the run too.
            events.append("middle setup")
            yield leaf + "+middle"
            events.append("middle teardown")

        @pytest.fixture
        async def top(sync_middle):
            events.append("top setup")
            yield sync_middle + "+top"
            events.append("top teardown")

        @pytest.mark.corral
        async def test_uses(top):
            assert top == "leaf+middle+top"
            assert events == ["leaf setup", "middle setup", "top setup"]
            events.append("test")

        def test_after():
            assert events == [
                "leaf setup", "middle setup", "top setup", "test",
                "top teardown", "middle teardown", "leaf teardown",
            ]
        """,
    )
    result.assert_outcomes(passed=2)


def test_independent_fixtures_set_up_concurrently(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from corral.testing import Sequencer, corral_fixture

        setup, teardown = [], []

        @corral_fixture
        def seq():
            return Sequencer()

        @pytest.fixture
        async def leaf():
            setup.append("leaf")
            yield
            teardown.append("leaf")
            assert teardown == ["a1", "b1", "a2", "b2", "leaf"]

        @pytest.fixture
        async def a(leaf, seq):
            async with seq(0):
                setup.append("a1")
            async with seq(2):
                setup.append("a2")
            yield
            async with seq(4):
                teardown.append("a1")
            async with seq(6):
                teardown.append("a2")

        @pytest.fixture
        async def b(leaf, seq):
            async with seq(1):
                setup.append("b1")
            async with seq(3):
                setup.append("b2")
            yield
            async with seq(5):
                teardown.append("b1")
            async with seq(7):
                teardown.append("b2")

        async def test_root(a, b):
            assert setup == ["leaf", "a1", "b1", "a2", "b2"]
            assert teardown == []

        def test_after():
            assert teardown == ["a1", "b1", "a2", "b2", "leaf"]
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=2)


def test_fixture_context_variables_reach_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import contextvars, pytest

        var = contextvars.ContextVar("var", default="unset")

        @pytest.fixture
        async def sets_var():
            var.set("from fixture")
            yield
            assert var.get() == "from test"

        async def test_sees_it(sets_var):
            assert var.get() == "from fixture"
            var.set("from test")
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1)


def test_autouse_async_fixtures_run(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        events = []

        @pytest.fixture(autouse=True)
        async def auto():
            await corral.sleep(0)
            events.append("setup")
            yield
            events.append("teardown")

        async def test_a():
            assert events == ["setup"]

        async def test_b():
            assert events == ["setup", "teardown", "setup"]
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=2)


def test_fixture_setup_crash_fails_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        ran = []

        @pytest.fixture
        async def broken():
            await corral.sleep(0)
            raise RuntimeError("setup crashed")
            yield

        async def test_uses(broken):
            ran.append("test")

        def test_after():
            assert ran == []
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r"E\s+RuntimeError: setup crashed"])
    # The real traceback: the line that raised is shown.
    result.stdout.fnmatch_lines(['*raise RuntimeError("setup crashed")*'])


def test_fixture_teardown_crash_fails_the_test_and_others_tear_down(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        torn_down = set()

        @pytest.fixture
        async def good():
            async with corral.open_nursery():
                yield
                torn_down.add("good")

        @pytest.fixture
        async def bad():
            async with corral.open_nursery():
                yield
                torn_down.add("bad")
                raise RuntimeError("teardown crashed")

        async def test_uses(bad, good):
            pass

        def test_after():
            assert torn_down == {"good", "bad"}
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r"(E\s+| +\| )RuntimeError: teardown crashed"])


def test_background_crash_in_fixture_cancels_the_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        events = []

        async def crash_soon():
            await corral.sleep(1)
            raise ValueError("background crash")

        @pytest.fixture
        async def fixture_with_background_task():
            # Yields inside its nursery; the nursery's scope is then
            # cancelled by the crash while the test runs.
            async with corral.open_nursery() as nursery:
                nursery.start_soon(crash_soon)
                yield
            events.append("unreachable")

        async def test_sleeps(fixture_with_background_task, autojump_clock):
            try:
                await corral.sleep_forever()
            finally:
                events.append("test cancelled")

        def test_after():
            assert events == ["test cancelled"]
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines([r"(E\s+| +\| )ValueError: background crash"])


def test_fixture_that_cancels_the_test_silently_is_reported(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        @pytest.fixture
        async def cancels():
            with corral.CancelScope() as scope:
                scope.cancel()
                yield

        async def test_whatever(cancels):
            pass
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*RuntimeError: <fixture 'cancels'> cancelled the test but didn't raise an error*"]
    )


def test_too_many_yields(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture
        async def twice():
            yield 1
            yield 2

        async def test_uses(twice):
            pass
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: too many yields in fixture*"])


def test_async_fixture_with_sync_test(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture
        async def async_fixture():
            pass

        def test_sync(async_fixture):
            pass
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: corral fixtures can only be used by corral tests*"])


def test_corral_fixture_with_sync_test_without_mode(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral
        from corral.testing import corral_fixture

        @corral_fixture
        def now():
            return corral.current_time()

        @pytest.fixture
        def indirect(now):
            return now + 1

        @pytest.mark.corral
        async def test_async(mock_clock, now, indirect):
            assert now == 0
            assert indirect == 1

        def test_sync(now):
            pass

        def test_sync_indirect(indirect):
            pass
        """,
    )
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*RuntimeError: corral fixtures can only be used by corral tests*"])


def test_async_fixture_must_be_function_scoped(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest

        @pytest.fixture(scope="session")
        async def session_fixture():
            pass

        async def test_whatever(session_fixture):
            pass
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: corral fixtures must be function-scope*"])


# ---------------------------------------------------------------- built-in fixtures


def test_autojump_clock(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import corral
        from corral.testing import MockClock

        async def test_long_sleep_is_instant(autojump_clock):
            assert isinstance(autojump_clock, MockClock)
            assert corral.lowlevel.current_clock() is autojump_clock
            start = autojump_clock.current_time()
            await corral.sleep(1000)
            assert autojump_clock.current_time() - start == 1000
        """,
        ini=CORRAL_MODE + "\ntimeout = 60",
    )
    result.assert_outcomes(passed=1)


def test_mock_clock_fixture(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import corral

        async def test_time_stands_still(mock_clock):
            assert corral.lowlevel.current_clock() is mock_clock
            before = corral.current_time()
            await corral.sleep(0)
            assert corral.current_time() == before
            mock_clock.jump(5)
            assert corral.current_time() == before + 5
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1)


def test_clock_requested_through_another_fixture(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral

        @pytest.fixture
        def uses_clock(autojump_clock):
            return autojump_clock

        async def test_indirect(uses_clock):
            assert corral.lowlevel.current_clock() is uses_clock
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1)


def test_too_many_clocks(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        async def test_whatever(mock_clock, autojump_clock):
            pass
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ValueError: Expected at most one Clock in kwargs, got *"])


def test_instrument_fixture_is_installed(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest
        from corral.abc import Instrument

        class Recorder(Instrument):
            def __init__(self):
                self.events = []
            def before_run(self):
                self.events.append("before_run")

        @pytest.fixture
        def recorder():
            return Recorder()

        async def test_instrumented(recorder):
            assert recorder.events == ["before_run"]
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1)


def test_nursery_fixture_is_cancelled_when_the_test_ends(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import corral
        from corral.testing import wait_all_tasks_blocked

        events = []

        async def background():
            try:
                await corral.sleep_forever()
            finally:
                events.append("background cancelled")

        async def test_starts_background(nursery):
            assert isinstance(nursery, corral.Nursery)
            nursery.start_soon(background)
            await wait_all_tasks_blocked()
            events.append("test done")

        def test_after():
            assert events == ["test done", "background cancelled"]
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=2)


def test_nursery_fixture_teardown_ordering(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        import pytest, corral
        from corral.testing import corral_fixture, wait_all_tasks_blocked

        events = []

        async def record_cancel(msg):
            try:
                await corral.sleep_forever()
            finally:
                events.append(msg)

        @pytest.fixture
        def outermost():
            yield
            assert events == [
                "test", "test cancel",
                "fix2 teardown", "fix2 cancel",
                "fix1 teardown", "fix1 cancel",
            ]

        @corral_fixture
        def fix1(nursery):
            nursery.start_soon(record_cancel, "fix1 cancel")
            yield
            events.append("fix1 teardown")

        @corral_fixture
        def fix2(fix1, nursery):
            nursery.start_soon(record_cancel, "fix2 cancel")
            yield
            events.append("fix2 teardown")

        @pytest.mark.corral
        async def test_root(outermost, fix2, nursery):
            nursery.start_soon(record_cancel, "test cancel")
            await wait_all_tasks_blocked()
            events.append("test")
        """,
    )
    result.assert_outcomes(passed=1)


def test_fixture_server_in_nursery(pytester: pytest.Pytester) -> None:
    # A fixture that starts a service with nursery.start and hands its
    # value to the test.
    result = run(
        pytester,
        """
        import pytest, corral

        async def echo(task_status=corral.TASK_STATUS_IGNORED):
            send, receive = corral.open_memory_channel(0)
            reply_send, reply_receive = corral.open_memory_channel(0)
            task_status.started((send, reply_receive))
            async for item in receive:
                await reply_send.send(item * 2)

        @pytest.fixture
        async def doubler(nursery):
            return await nursery.start(echo)

        async def test_doubles(doubler):
            send, receive = doubler
            await send.send(21)
            assert await receive.receive() == 42
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1)


# ---------------------------------------------------------------- configuration


def test_corral_run_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        fakerun="""
        import corral

        used = []

        def run(*args, **kwargs):
            used.append(True)
            return corral.run(*args, **kwargs)
        """
    )
    result = run(
        pytester,
        """
        import fakerun

        async def test_uses_fake_run():
            assert fakerun.used == [True]
        """,
        ini=CORRAL_MODE + "\ncorral_run = fakerun:run",
    )
    result.assert_outcomes(passed=1)


def test_run_from_marker_wins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        fakerun="""
        import corral

        used = []

        def run(*args, **kwargs):
            used.append(True)
            return corral.run(*args, **kwargs)
        """
    )
    result = run(
        pytester,
        """
        import pytest, fakerun

        @pytest.mark.corral(run=fakerun.run)
        async def test_uses_fake_run():
            assert fakerun.used == [True]
        """,
        ini=CORRAL_MODE,
    )
    result.assert_outcomes(passed=1)


def test_invalid_corral_run(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        async def test_whatever():
            pass
        """,
        ini=CORRAL_MODE + "\ncorral_run = nonsense",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*ValueError: 'nonsense' not valid for 'corral_run' config.  Must be one of: *"]
    )


@_needs_sigalrm
def test_pytest_timeout_fails_the_test_cleanly(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n" + CORRAL_MODE + "\n")
    pytester.makeconftest(
        """
        import corral.testing._pytest_plugin as plugin

        plugin._TIMEOUT_GRACE = 0.5  # keep the fallback case quick
        """
    )
    pytester.makepyfile(
        """
        import time
        import pytest, corral

        events = []

        @pytest.fixture
        async def tidy():
            yield
            events.append("fixture torn down")

        @pytest.mark.timeout(0.5)
        async def test_hangs(tidy):
            try:
                await corral.sleep(30)
            finally:
                events.append("test cancelled")

        @pytest.mark.timeout(0.5)
        async def test_blocks_without_checkpoint():
            # Never reaches the scheduler: the fallback raises in here.
            time.sleep(30)

        async def test_next_one_runs():
            await corral.sleep(0)
            assert events == ["test cancelled", "fixture torn down"]
        """
    )
    # In a subprocess: SIGALRM must not reach the outer session.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=1)
    result.stdout.re_match_lines(
        [r"E\s+Failed: Timeout \(>0.5s\) from pytest-timeout.", r".*time\.sleep\(30\)"],
        consecutive=False,
    )
    result.stdout.no_fnmatch_line("*CorralInternalError*")
    result.stdout.no_fnmatch_line("*errors in async test*")


@_needs_sigalrm
def test_pytest_timeout_is_reported_even_if_the_test_catches_it(pytester: pytest.Pytester) -> None:
    # The fallback raises pytest-timeout's failure wherever the main thread
    # is stuck: here inside a nursery under pytest.raises(BaseExceptionGroup),
    # as in a test that expects a conformance suite to fail. The test must
    # still fail with the timeout (it used to pass, or fail with whatever
    # its own assertion said), and the report must show where it was stuck.
    pytester.makeini("[pytest]\n" + CORRAL_MODE + "\n")
    pytester.makeconftest(
        """
        import corral.testing._pytest_plugin as plugin

        plugin._TIMEOUT_GRACE = 0.5  # keep the fallback case quick
        """
    )
    pytester.makepyfile(
        """
        import time
        import pytest, corral

        @pytest.mark.timeout(0.5)
        async def test_swallows_the_timeout():
            async def stuck():
                await corral.sleep(0)
                time.sleep(30)

            with pytest.raises(BaseExceptionGroup):
                async with corral.open_nursery() as nursery:
                    nursery.start_soon(stuck)

        @pytest.mark.timeout(0.5)
        async def test_waits_forever():
            async with corral.open_nursery() as nursery:
                nursery.start_soon(corral.sleep, 30, name="sleeper")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.re_match_lines(
        [
            r"_+ test_swallows_the_timeout _+",
            r"E\s+Failed: Timeout \(>0.5s\) from pytest-timeout.",
            r"~+ main thread, stuck for the timeout plus the grace period ~+",
            r"\s+time\.sleep\(30\)",
            r"_+ test_waits_forever _+",
            r"E\s+Failed: Timeout \(>0.5s\) from pytest-timeout.",
            r"~+ corral tasks of the test, where each one waits ~+",
            r"-- task <test 'test_waits_forever'>",
            r"\s+async with corral.open_nursery\(\) as nursery:",
            r"-- task sleeper",
            r".*in sleep$",
        ],
        consecutive=False,
    )
    result.stdout.no_fnmatch_line("*CorralInternalError*")


@_needs_sigalrm
def test_other_alarm_handlers_are_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n" + CORRAL_MODE + "\n")
    pytester.makepyfile(
        """
        import signal
        import pytest, corral

        @pytest.fixture
        def alarm_log():
            log = []
            previous = signal.signal(signal.SIGALRM, lambda *args: log.append("alarm"))
            yield log
            signal.signal(signal.SIGALRM, previous)

        async def test_own_alarm(alarm_log):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            while not alarm_log:
                await corral.sleep(0.01)
            # No re-armed alarm, no second call.
            await corral.sleep(0.2)
            assert alarm_log == ["alarm"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:timeout")
    result.assert_outcomes(passed=1)
