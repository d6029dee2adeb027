"""Mutation operators: every operator fires, every mutant parses, edits are token-precise."""

from __future__ import annotations

import ast

from swe_rl.tasks.mutations import OPERATORS, enumerate_mutations, is_code_file

MODULE = '''\
"""Module docstring: not code."""
import functools

LIMIT = 10  # module level: never mutated


@functools.lru_cache(maxsize=32)
def classify(n, items=(1, 2)):
    """Docstring stays."""
    label = "héllo"  # non-ASCII before an operator on a later line
    if n < 0 and label:
        return "negative"
    if n >= LIMIT or n == 3:
        log(n, "big")
    while n > 100:
        n = n // 2
    total = n + 1 * 2
    flag = True
    return n in items


def log(a, b):
    print(a, b)
    return None


class Box:
    def size(self, x):
        if x is None:
            return 0
        y = x % 3  # tail comment kept
        return y if y <= 1 else -y
'''


def test_every_operator_fires_and_every_mutant_parses():
    muts = enumerate_mutations(MODULE, "pkg/mod.py")
    assert set(OPERATORS) <= {m.operator for m in muts}
    original = ast.dump(ast.parse(MODULE))
    for m in muts:
        mutated = m.apply(MODULE)
        assert ast.dump(ast.parse(mutated)) != original, m
    assert len({m.apply(MODULE) for m in muts}) == len(muts)  # deduplicated by resulting source


def test_edits_touch_only_the_mutated_tokens():
    for m in enumerate_mutations(MODULE, "pkg/mod.py"):
        before, after = MODULE.splitlines(), m.apply(MODULE).splitlines()
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        if m.operator == "remove_statement":
            assert len(after) < len(before)
            continue
        assert len(before) == len(after) and len(changed) == 1, m  # one line, the rest byte-identical
        old, new = changed[0]
        assert old.replace(m.original, m.replacement, 1) == new or m.operator == "swap_arguments"
    comp = next(m for m in enumerate_mutations(MODULE, "m.py") if m.operator == "boundary" and m.function == "classify")
    assert (comp.original, comp.replacement) == ("<", "<=")  # the byte offsets survive the "é" on an earlier line
    assert "# tail comment kept" in next(m for m in enumerate_mutations(MODULE, "m.py")
                                         if m.operator == "arithmetic_swap" and m.function == "Box.size").apply(MODULE)


def test_only_function_bodies_are_mutated():
    muts = enumerate_mutations(MODULE, "m.py")
    lines = {m.line for m in muts}
    assert 1 not in lines and 4 not in lines and 7 not in lines  # docstring, module constant, decorator
    assert not any(m.original == "Docstring stays." for m in muts)
    assert {m.function for m in muts} == {"classify", "log", "Box.size"}
    patch = next(m for m in muts if m.operator == "negate_comparison").patch(MODULE)
    assert patch.startswith("diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ ")
    assert sum(line[:1] in "+-" for line in patch.splitlines()[4:]) == 2


def test_enumeration_is_deterministic_and_skips_broken_source():
    assert enumerate_mutations(MODULE, "m.py") == enumerate_mutations(MODULE, "m.py")
    assert enumerate_mutations("def f(:\n", "m.py") == []


def test_test_files_are_not_code():
    assert is_code_file("pkg/core.py") and is_code_file("src/pkg/util.py")
    for path in ("tests/test_x.py", "pkg/tests/helpers.py", "test_x.py", "x_test.py", "conftest.py", "setup.py",
                 "docs/conf.py", "README.md"):
        assert not is_code_file(path), path
