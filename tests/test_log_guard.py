"""The log guard of tests/conftest.py: an error logged by the project's code fails the test,
whether a fixture's set-up, the test itself or a fixture's tear-down logged it."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

INNER = """
import logging

import pytest

log = logging.getLogger("services.inner")


@pytest.fixture
def logs_in_teardown():
    yield
    log.error("broken in tear-down")


@pytest.fixture
def logs_in_setup():
    log.error("broken in set-up")


def test_clean():
    log.warning("a warning is no error")


def test_error_in_call():
    log.error("broken in the call")


def test_error_in_teardown(logs_in_teardown):
    pass


def test_error_in_setup(logs_in_setup):
    pass


@pytest.mark.allow_logged_errors
def test_allowed(logs_in_setup, logs_in_teardown):
    log.error("expected")


def test_error_of_a_library():
    logging.getLogger("aiokafka").error("not ours to judge")
"""


def test_an_error_logged_in_any_phase_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_inner=INNER)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the inner run loads tests/conftest.py
    monkeypatch.setenv("COLUMNS", "300")  # the summary lines in full
    result = pytester.runpytest_subprocess("-p", "tests.conftest", "-rA", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines_random(
        [
            "PASSED test_inner.py::test_clean",
            "FAILED test_inner.py::test_error_in_call - unexpected errors logged during call: "
            "services.inner: broken in the call",
            "ERROR test_inner.py::test_error_in_teardown - unexpected errors logged during "
            "teardown: services.inner: broken in tear-down",
            "ERROR test_inner.py::test_error_in_setup - unexpected errors logged during setup: "
            "services.inner: broken in set-up",
            "PASSED test_inner.py::test_allowed",
            "PASSED test_inner.py::test_error_of_a_library",
        ]
    )
    # the test whose tear-down logged passed its call, and errs at tear-down
    result.assert_outcomes(passed=4, failed=1, errors=2)
