"""Problem statements from pytest's report: what they show, and that they are the same from run to run."""

from __future__ import annotations

from swe_rl.tasks.statements import build_statement

LOG = """\
=================================== FAILURES ===================================
__________________________________ test_diff ___________________________________
tests/test_x.py:12: in test_diff
    assert raises(TypeError, lambda: diff(1))
E   assert False
E    +  where False = raises(TypeError, <function test_diff.<locals>.<lambda> at {a}>)
_________________________________ test_keys ____________________________________
tests/test_x.py:20: in test_keys
    assert keyfilter(f, d) == d
E   AssertionError: assert <test_x.Dict...x{b}> == [<function...{c}>]
=========================== short test summary info ============================
"""


def test_object_addresses_are_masked():
    first = build_statement(["tests/test_x.py::test_diff", "tests/test_x.py::test_keys"],
                            LOG.format(a="0x7fdc26f872e0", b="7fa3a4425450", c="7fa3a4424d10"), hidden=["x.py"])
    again = build_statement(["tests/test_x.py::test_diff", "tests/test_x.py::test_keys"],
                            LOG.format(a="0x7f24bacc72e0", b="7ff801169090", c="7ff8011684d0"), hidden=["x.py"])
    assert first == again
    assert "<function test_diff.<locals>.<lambda> at 0x...>" in first
    assert "assert raises(TypeError, lambda: diff(1))" in first and "Also failing: `tests/test_x.py::test_keys`" in first
    second = build_statement(["tests/test_x.py::test_keys"], LOG.format(a="0x1", b="7fa3a4425450", c="7fa3a4424d10"),
                             hidden=["x.py"])
    assert "<test_x.Dict...x...> == [<function......>]" in second
