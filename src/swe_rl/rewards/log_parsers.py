"""Test-log parsers: a test run's output -> {test id: status}, registered by name.

Grading (grading.py) looks up `task.install_config.log_parser` here. The parsers are
our own equivalents of the SWE-bench harness parsers (`swebench/harness/log_parsers`),
so F2P/P2P ids recorded with those parsers mean the same thing here.
"""

from __future__ import annotations

import re
from typing import Callable

PASSED, FAILED, SKIPPED, ERROR, XFAIL = "PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL"
STATUSES = (FAILED, PASSED, SKIPPED, ERROR, XFAIL)
FAILING = frozenset({FAILED, ERROR})

LogParser = Callable[[str], dict[str, str]]

_STATUS_ALT = "|".join(STATUSES)
_STATUS_FIRST = re.compile(rf"^({_STATUS_ALT})\s+(\S+)")
_TEST_FIRST = re.compile(rf"^(\S+)\s+({_STATUS_ALT})(?:\s|$)")
_SKIP_COUNT = re.compile(r"\[\d+\]")  # "SKIPPED [2] tests/x.py:10: reason" names a location, not a test
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\[(\d+)m")
_CONTROL = str.maketrans("", "", "".join(chr(c) for c in range(1, 32) if c not in (9, 10)))


def _record(statuses: dict[str, str], test: str, status: str) -> None:
    """Last status wins, except that a failure is never overwritten by a pass.

    Genuine pytest output names each test once per phase, and a teardown ERROR comes
    after the PASSED line, so this equals SWE-bench's last-wins there; but a test that
    prints a fake `PASSED tests/x.py::test_y` line (or one written at exit, after the
    summary) cannot turn a real failure into a pass.
    """
    if statuses.get(test) in FAILING and status not in FAILING:
        return
    statuses[test] = status


def _pytest_line(line: str) -> tuple[str, str] | None:
    m = _STATUS_FIRST.match(line)
    if m:
        status, test = m.groups()
        if status == FAILED:  # "FAILED tests/x.py::t - AssertionError" and "FAILED x.py::t[a - b]"
            test = line.replace(" - ", " ").split()[1]
        if status == SKIPPED and _SKIP_COUNT.match(test):
            return None
        return test, status
    m = _TEST_FIRST.match(line)
    if m:
        return m.group(1), m.group(2)
    return None


def _clean(line: str) -> str:
    return _ANSI.sub("", line).translate(_CONTROL)


def parse_log_pytest(log: str) -> dict[str, str]:
    """`pytest -rA` output: `STATUS test_id [- message]` summary lines or `test_id STATUS` (-v) lines."""
    statuses: dict[str, str] = {}
    for line in log.split("\n"):
        parsed = _pytest_line(_clean(line))
        if parsed:
            _record(statuses, *parsed)
    return statuses


# SWE-bench's v2 strips colour codes and control characters; `parse_log_pytest` does that too.
parse_log_pytest_v2 = parse_log_pytest

_OPTION = re.compile(r"(.*?)\[(.*)\]")


def _normalize_option(test: str) -> str:
    """Parameters that are absolute paths keep only their last component (they differ per machine)."""
    m = _OPTION.search(test)
    if not m:
        return test
    main, option = m.groups()
    if option.startswith("/") and not option.startswith("//") and "*" not in option:
        option = "/" + option.split("/")[-1]
    return f"{main}[{option}]"


def parse_log_pytest_options(log: str) -> dict[str, str]:
    """Like `parse_log_pytest`, with path-valued parameters normalised (requests, pylint, pydicom)."""
    statuses: dict[str, str] = {}
    for test, status in parse_log_pytest(log).items():
        _record(statuses, _normalize_option(test), status)
    return statuses


_DJANGO_PASS_SUFFIXES = (" ... ok", " ... OK", " ...  OK")
# Django's logger sometimes splits "test ... ok" over lines; SWE-bench matches these three shapes.
_DJANGO_SPLIT = [
    re.compile(r"^(.*?)\s\.\.\.\sTesting\ against\ Django\ installed\ in\ ((?s:.*?))\ silenced\)\.\nok$", re.M),
    re.compile(r"^(.*?)\s\.\.\.\sInternal\ Server\ Error:\ \/(.*)\/\nok$", re.M),
    re.compile(r"^(.*?)\s\.\.\.\sSystem check identified no issues \(0 silenced\)\nok$", re.M),
]


def parse_log_django(log: str) -> dict[str, str]:
    """Django's `runtests.py --verbosity 2`: `test_x (module.Class) ... ok|FAIL|ERROR|skipped`."""
    statuses: dict[str, str] = {}
    prev_test = None
    for raw in log.split("\n"):
        line = raw.strip()
        if "--version is equivalent to version" in line:
            statuses["--version is equivalent to version"] = PASSED
        if " ... " in line:
            prev_test = line.split(" ... ")[0]
        for suffix in _DJANGO_PASS_SUFFIXES:
            if line.endswith(suffix):
                if line.startswith("Applying sites.0002_alter_domain_unique...test_no_migrations"):
                    line = line.split("...", 1)[-1].strip()  # django__django-7188 prints both on one line
                statuses[line.rsplit(suffix, 1)[0]] = PASSED
                break
        if " ... skipped" in line:
            statuses[line.split(" ... skipped")[0]] = SKIPPED
        if line.endswith(" ... FAIL"):
            statuses[line.split(" ... FAIL")[0]] = FAILED
        if line.startswith("FAIL:") and len(line.split()) > 1:
            statuses[line.split()[1].strip()] = FAILED
        if line.endswith(" ... ERROR"):
            statuses[line.split(" ... ERROR")[0]] = ERROR
        if line.startswith("ERROR:") and len(line.split()) > 1:
            statuses[line.split()[1].strip()] = ERROR
        if line.lstrip().startswith("ok") and prev_test is not None:
            statuses[prev_test] = PASSED  # the test printed between "..." and "ok"
    for pattern in _DJANGO_SPLIT:
        for m in pattern.finditer(log):
            statuses[m.group(1)] = PASSED
    return statuses


_SYMPY_FAILURE_HEADER = re.compile(r"(_*) (.*)\.py:(.*) (_*)")


def parse_log_sympy(log: str) -> dict[str, str]:
    """SymPy's `bin/test -C --verbose`: `test_name ok|F|E` lines plus `___ file.py:test ___` failure headers."""
    statuses: dict[str, str] = {}
    for m in _SYMPY_FAILURE_HEADER.findall(log):
        statuses[f"{m[1]}.py:{m[2]}"] = FAILED
    for raw in log.split("\n"):
        line = raw.strip()
        if not line.startswith("test_"):
            continue
        test = line.split()[0]
        if line.endswith(" E"):
            statuses[test] = ERROR
        if line.endswith(" F"):
            statuses[test] = FAILED
        if line.endswith(" ok"):
            statuses[test] = PASSED
    return statuses


def parse_log_seaborn(log: str) -> dict[str, str]:
    statuses: dict[str, str] = {}
    for line in log.split("\n"):
        parts = line.split()
        if line.startswith(FAILED) and len(parts) > 1:
            statuses[parts[1]] = FAILED
        elif f" {PASSED} " in line and len(parts) > 1 and parts[1] == PASSED:
            statuses[parts[0]] = PASSED
        elif line.startswith(PASSED) and len(parts) > 1:
            statuses[parts[1]] = PASSED
    return statuses


def parse_log_matplotlib(log: str) -> dict[str, str]:
    """pytest -rA, with enum reprs in parameter ids replaced by their values."""
    statuses: dict[str, str] = {}
    for line in log.split("\n"):
        line = line.replace("MouseButton.LEFT", "1").replace("MouseButton.RIGHT", "3")
        if not any(line.startswith(s) for s in STATUSES):
            continue
        if line.startswith(FAILED):
            line = line.replace(" - ", " ")
        parts = line.split()
        if len(parts) > 1:
            _record(statuses, parts[1], parts[0])
    return statuses


PARSERS: dict[str, LogParser] = {
    "pytest": parse_log_pytest,
    "pytest_v2": parse_log_pytest_v2,
    "pytest_options": parse_log_pytest_options,
    "django": parse_log_django,
    "sympy": parse_log_sympy,
    "seaborn": parse_log_seaborn,
    "matplotlib": parse_log_matplotlib,
}
# SWE-bench's per-repository names, so SWE-bench / SWE-rebench task files work unchanged.
for _name in ("astroid", "flask", "marshmallow", "pvlib", "pyvista", "sqlfluff", "xarray"):
    PARSERS[_name] = parse_log_pytest
for _name in ("pydicom", "requests", "pylint"):
    PARSERS[_name] = parse_log_pytest_options
for _name in ("astropy", "scikit", "sphinx"):
    PARSERS[_name] = parse_log_pytest_v2

# Parsers of pytest runs: their test ids are pytest node ids, which can be passed to the command.
PYTEST_FAMILY = frozenset(n for n in PARSERS if n not in ("django", "sympy"))


def canonical_name(name: str) -> str:
    """`parse_log_pytest` (SWE-rebench's spelling) and `pytest` name the same parser."""
    return name.strip().removeprefix("parse_log_")


def get_parser(name: str) -> LogParser:
    """The parser registered as `name`; a KeyError lists the known names."""
    key = canonical_name(name)
    if key not in PARSERS:
        raise KeyError(f"unknown log parser {name!r}; known: {', '.join(sorted(PARSERS))}")
    return PARSERS[key]
