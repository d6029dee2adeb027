"""Log parsers on real pytest output (produced here by running pytest) and on SWE-bench-style logs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from swe_rl.rewards.log_parsers import PARSERS, get_parser, parse_log_django, parse_log_pytest, parse_log_sympy

SAMPLE = textwrap.dedent(
    '''
    import atexit, os, pytest

    # A forged result line printed at exit, after pytest's own summary (a reward-hacking attempt).
    atexit.register(lambda: os.write(1, b"PASSED test_sample.py::test_fail\\n"))

    @pytest.fixture
    def broken():
        raise RuntimeError("fixture")

    def test_pass():
        print("PASSED test_sample.py::test_fail")  # forged line inside captured output

    def test_fail():
        assert 1 == 2

    def test_error(broken):
        pass

    @pytest.mark.skip(reason="no")
    def test_skip():
        pass

    @pytest.mark.xfail(reason="known")
    def test_xfail():
        assert 0

    @pytest.mark.parametrize("x", ["a b", "c - d", "e[f]"])
    def test_param(x):
        assert x != "c - d"

    class TestGroup:
        def test_method(self):
            pass
    '''
)


@pytest.fixture(scope="module")
def pytest_logs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("sample")
    (d / "test_sample.py").write_text(SAMPLE)
    logs = {}
    for name, extra in (("rA", ["-rA"]), ("verbose", ["-rA", "-v"]), ("color", ["-rA", "--color=yes"])):
        res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *extra, "test_sample.py"],
                             cwd=d, capture_output=True, text=True, timeout=60)
        logs[name] = res.stdout + res.stderr
    return logs


EXPECTED = {
    "test_sample.py::test_pass": "PASSED",
    "test_sample.py::test_fail": "FAILED",
    "test_sample.py::test_error": "ERROR",
    "test_sample.py::test_xfail": "XFAIL",
    "test_sample.py::test_param[a": "PASSED",  # as in SWE-bench, an id is cut at its first space
    "test_sample.py::test_param[e[f]]": "PASSED",
    "test_sample.py::TestGroup::test_method": "PASSED",
}


@pytest.mark.parametrize("mode", ["rA", "verbose", "color"])
def test_pytest_parser_reads_real_pytest_output(pytest_logs, mode):
    statuses = parse_log_pytest(pytest_logs[mode])
    for test, status in EXPECTED.items():
        assert statuses.get(test) == status, (test, mode, pytest_logs[mode][-3000:])
    # "c - d" contains the " - " separator of FAILED lines, as in SWE-bench the id is cut there.
    assert statuses.get("test_sample.py::test_param[c") == "FAILED"
    # "SKIPPED [1] test_sample.py:18: no" names a location, not a test.
    assert not any(k.startswith("[") for k in statuses)
    assert "test_sample.py::test_skip" not in statuses or statuses["test_sample.py::test_skip"] == "SKIPPED"


def test_forged_pass_lines_cannot_override_a_real_failure(pytest_logs):
    log = pytest_logs["rA"]
    assert log.count("PASSED test_sample.py::test_fail") == 2  # the forgery really is in the log, twice
    assert log.rstrip().endswith("PASSED test_sample.py::test_fail")  # the second after the summary
    assert parse_log_pytest(log)["test_sample.py::test_fail"] == "FAILED"


def test_teardown_error_after_pass_is_an_error():
    log = "PASSED tests/test_a.py::test_x\nERROR tests/test_a.py::test_x - RuntimeError: teardown\n"
    assert parse_log_pytest(log) == {"tests/test_a.py::test_x": "ERROR"}


def test_pytest_options_normalises_path_parameters():
    log = "PASSED tests/test_a.py::test_x[/home/ci/data/file.txt]\n"
    assert get_parser("pytest_options")(log) == {"tests/test_a.py::test_x[/file.txt]": "PASSED"}


def test_django_log():
    log = textwrap.dedent(
        """\
        test_add (utils_tests.test_text.TestUtilsText) ... ok
        test_sub (utils_tests.test_text.TestUtilsText) ... FAIL
        test_mul (utils_tests.test_text.TestUtilsText) ... ERROR
        test_div (utils_tests.test_text.TestUtilsText) ... skipped 'no db'
        test_pow (utils_tests.test_text.TestUtilsText) ... some output
        ok
        ======================================================================
        FAIL: test_sub (utils_tests.test_text.TestUtilsText)
        """
    )
    assert parse_log_django(log) == {
        "test_add (utils_tests.test_text.TestUtilsText)": "PASSED",
        "test_sub (utils_tests.test_text.TestUtilsText)": "FAILED",
        "test_sub": "FAILED",  # SWE-bench keeps the first word after "FAIL:" too
        "test_mul (utils_tests.test_text.TestUtilsText)": "ERROR",
        "test_div (utils_tests.test_text.TestUtilsText)": "SKIPPED",
        "test_pow (utils_tests.test_text.TestUtilsText)": "PASSED",
    }


def test_sympy_log():
    log = textwrap.dedent(
        """\
        sympy/core/tests/test_basic.py[3]
        test_one ok
        test_two F
        test_three E
        ________________ sympy/core/tests/test_basic.py:test_two ________________
        """
    )
    assert parse_log_sympy(log) == {
        "test_one": "PASSED",
        "test_two": "FAILED",
        "test_three": "ERROR",
        "sympy/core/tests/test_basic.py:test_two": "FAILED",
    }


def test_registry_names():
    assert get_parser("parse_log_pytest") is get_parser("pytest")  # SWE-rebench spells it this way
    assert get_parser("django") is parse_log_django and "sympy" in PARSERS
    with pytest.raises(KeyError, match="unknown log parser 'nose'.*known: .*pytest"):
        get_parser("nose")
