"""Bug injection: AST mutation operators on non-test code, applied as token-precise source edits.

`enumerate_mutations` walks every function body of a module and lists candidate bugs
deterministically; each is one byte span of the file replaced by new text, so the task's
diff touches only the mutated tokens and the rest of the formatting stays intact.
synthesize.py turns the candidates that some tests catch into tasks.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

OPERATORS = (
    "negate_comparison",  # == <-> !=, in <-> not in, is <-> is not
    "flip_comparison",  # < <-> >, <= <-> >=
    "boundary",  # < <-> <=, > <-> >=
    "off_by_one",  # integer constant n -> n + 1 / n - 1
    "wrong_constant",  # True <-> False, short string -> ""
    "swap_arguments",  # f(a, b) -> f(b, a)
    "remove_statement",  # a call statement or an if-branch deleted
    "wrong_return",  # return x -> return None; return <bool> -> return not (<bool>)
    "invert_condition",  # if c -> if not (c)
    "arithmetic_swap",  # + <-> -, * <-> /, // <-> /, % -> //
    "bool_op_swap",  # and <-> or
)
_NEGATE = {ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.In: (r"in", "not in"), ast.NotIn: (r"not\s+in", "in"),
           ast.Is: (r"is", "is not"), ast.IsNot: (r"is\s+not", "is")}
_FLIP = {ast.Lt: ("<", ">"), ast.Gt: (">", "<"), ast.LtE: ("<=", ">="), ast.GtE: (">=", "<=")}
_BOUNDARY = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">")}
_ARITH = {ast.Add: (r"\+", "-"), ast.Sub: ("-", "+"), ast.Mult: (r"\*", "/"), ast.Div: ("/", "*"),
          ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "//")}
_BOOL = {ast.And: ("and", "or"), ast.Or: ("or", "and")}
_TEST_DIRS = {"test", "tests", "testing", "docs", "doc", "examples", "example", "benchmarks", "bench"}
_NOT_CODE = {"conftest.py", "setup.py", "noxfile.py", "fabfile.py", "conf.py"}


@dataclass(frozen=True)
class Mutation:
    """One candidate bug: bytes [start, end) of `file` become `replacement`."""

    file: str  # repository-relative POSIX path
    operator: str
    function: str  # qualified name of the enclosing function ("Class.method")
    line: int  # 1-based line of the edit
    start: int  # byte offsets into the UTF-8 source
    end: int
    original: str
    replacement: str

    def apply(self, source: str) -> str:
        data = source.encode()
        return (data[: self.start] + self.replacement.encode() + data[self.end:]).decode()

    def patch(self, source: str) -> str:
        """The bug as a git-style diff (a/ = correct source, b/ = mutated)."""
        return unified_diff(self.file, source, self.apply(source))

    @property
    def key(self) -> str:
        """Stable identity (file, span, replacement): the dedupe and resume key."""
        raw = f"{self.file}\0{self.start}\0{self.end}\0{self.replacement}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)


def unified_diff(file: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"a/{file}", f"b/{file}", n=3)
    body = "".join(lines)
    return f"diff --git a/{file} b/{file}\n{body}" if body else ""


def is_code_file(path: str) -> bool:
    """A Python file that is library code, not tests, docs, examples or build scripts."""
    p = PurePosixPath(path)
    if p.suffix != ".py" or p.name in _NOT_CODE or p.name.startswith("test_") or p.name.endswith("_test.py"):
        return False
    return not any(part.lower() in _TEST_DIRS for part in p.parts[:-1])


def enumerate_mutations(source: str, file: str) -> list[Mutation]:
    """Every candidate mutation of `source` inside function bodies, in source order, deduplicated.

    Each result parses and differs from the original AST (a no-op edit is dropped). Only the
    top-level statement a candidate edits is re-parsed: re-parsing the whole module per candidate
    took minutes and hundreds of MB on large modules, and the other statements cannot change.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    finder = _Finder(source, file)
    finder.visit(tree)
    spans = [finder.span(stmt) for stmt in tree.body]
    starts = [start for start, _ in spans]
    original_dumps: dict[int, str] = {}
    out: list[Mutation] = []
    seen: set[tuple[int, bytes]] = set()
    for m in sorted(finder.found, key=lambda m: (m.start, m.end, OPERATORS.index(m.operator), m.replacement)):
        i = bisect.bisect_right(starts, m.start) - 1
        start, end = spans[i] if i >= 0 and m.end <= spans[i][1] else (0, len(finder.data))  # else: the module
        segment = finder.data[start:end]
        mutated = segment[: m.start - start] + m.replacement.encode() + segment[m.end - start:]
        key = (start, hashlib.sha256(mutated).digest())
        if key in seen:
            continue
        try:
            if start not in original_dumps:
                original_dumps[start] = ast.dump(ast.parse(segment.decode()))
            if ast.dump(ast.parse(mutated.decode())) == original_dumps[start]:
                continue
        except SyntaxError:
            continue
        seen.add(key)
        out.append(m)
    return out


class _Finder(ast.NodeVisitor):
    def __init__(self, source: str, file: str) -> None:
        self.data = source.encode()
        self.file = file
        starts, pos = [], 0
        for line in self.data.splitlines(keepends=True):
            starts.append(pos)
            pos += len(line)
        self.line_starts = starts + [pos]
        self.stack: list[str] = []
        self.in_function = 0
        self.found: list[Mutation] = []
        self.parents: dict[int, ast.AST] = {}

    # --- positions -----------------------------------------------------------------------------
    def _off(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self._off(node.lineno, node.col_offset), self._off(node.end_lineno, node.end_col_offset)

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    def add(self, op: str, line: int, start: int, end: int, replacement: str) -> None:
        self.found.append(Mutation(self.file, op, ".".join(self.stack) or "<module>", line, start, end,
                                   self.text(start, end), replacement))

    def op_between(self, op: str, left: ast.AST, right: ast.AST, pattern: str, new: str) -> None:
        """Replace the operator token between two operands; only when the gap holds nothing else."""
        start, end = self.span(left)[1], self.span(right)[0]
        gap = self.text(start, end)
        m = re.search(rf"(?<![\w<>=!*/%+-]){pattern}(?![\w<>=!*/%+-])", gap)
        if m is None or not re.fullmatch(r"[\s()\\]*", gap[: m.start()] + gap[m.end():]):
            return
        self.add(op, left.end_lineno, start + len(gap[: m.start()].encode()), start + len(gap[: m.end()].encode()), new)

    # --- traversal -----------------------------------------------------------------------------
    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.parents[id(child)] = node
        super().generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # Only the body: decorators and default arguments are evaluated at import time.
        self.stack.append(node.name)
        self.in_function += 1
        body = node.body[1:] if _is_docstring(node.body[0]) and len(node.body) > 1 else node.body
        for stmt in body:
            self.parents[id(stmt)] = node
            self.visit(stmt)
        self._removals(body)
        self.in_function -= 1
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _removals(self, body: list[ast.stmt]) -> None:
        """Delete a whole call statement or an `if` without else, when it stands alone on its lines."""
        if len(body) < 2:
            return
        for stmt in body:
            removable = (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)) or \
                        (isinstance(stmt, ast.If) and not stmt.orelse)
            if not removable:
                continue
            start, end = self.line_starts[stmt.lineno - 1], self.line_starts[stmt.end_lineno]
            head = self.text(start, self._off(stmt.lineno, stmt.col_offset))
            tail = self.text(self.span(stmt)[1], end)
            if head.strip() or tail.strip():
                continue  # shares a line with other code (`x = 1; f()`)
            self.add("remove_statement", stmt.lineno, start, end, "")

    def _bodies(self, node: ast.AST) -> None:
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt) and self.in_function:
                self._removals(block)
        for handler in getattr(node, "handlers", []):
            self._removals(handler.body)

    def visit_If(self, node: ast.If) -> None:
        if self.in_function:
            self._condition(node.test)
        self._bodies(node)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        if self.in_function:
            self._condition(node.test)
        self._bodies(node)
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        self._bodies(node)
        self.generic_visit(node)

    visit_With = visit_Try = visit_For

    def visit_IfExp(self, node: ast.IfExp) -> None:
        if self.in_function:
            self._condition(node.test)
        self.generic_visit(node)

    def _condition(self, test: ast.expr) -> None:
        s, e = self.span(test)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self.span(test.operand)
            self.add("invert_condition", test.lineno, s, e, self.text(*inner))
        else:
            self.add("invert_condition", test.lineno, s, e, _negated(test, self.text(s, e)))

    def visit_Compare(self, node: ast.Compare) -> None:
        if self.in_function:
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                for name, table in (("negate_comparison", _NEGATE), ("flip_comparison", _FLIP), ("boundary", _BOUNDARY)):
                    if type(op) in table:
                        pattern, new = table[type(op)]
                        self.op_between(name, operands[i], operands[i + 1], pattern, new)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        strings = any(isinstance(x, (ast.JoinedStr, ast.List, ast.Tuple)) or
                      (isinstance(x, ast.Constant) and isinstance(x.value, (str, bytes))) for x in (node.left, node.right))
        if self.in_function and type(node.op) in _ARITH and not strings:
            pattern, new = _ARITH[type(node.op)]
            self.op_between("arithmetic_swap", node.left, node.right, pattern, new)
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        if self.in_function:
            pattern, new = _BOOL[type(node.op)]
            for a, b in zip(node.values, node.values[1:]):
                self.op_between("bool_op_swap", a, b, pattern, new)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        args = node.args
        if self.in_function and len(args) >= 2 and not any(isinstance(a, ast.Starred) for a in args[:2]):
            (s0, e0), (s1, e1) = self.span(args[0]), self.span(args[1])
            a, b = self.text(s0, e0), self.text(s1, e1)
            if a != b:
                self.add("swap_arguments", node.lineno, s0, e1, b + self.text(e0, s1) + a)
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        v = node.value
        if self.in_function and v is not None and not (isinstance(v, ast.Constant) and v.value is None):
            s, e = self.span(v)
            boolish = isinstance(v, (ast.Compare, ast.BoolOp)) or (isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not)) \
                or (isinstance(v, ast.Constant) and isinstance(v.value, bool))
            if boolish:
                self.add("wrong_return", node.lineno, s, e, _negated(v, self.text(s, e)))
            else:
                self.add("wrong_return", node.lineno, s, e, "None")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not self.in_function or isinstance(self.parents.get(id(node)), (ast.JoinedStr, ast.FormattedValue)):
            return
        s, e = self.span(node)
        v = node.value
        if isinstance(v, bool):
            self.add("wrong_constant", node.lineno, s, e, str(not v))
        elif isinstance(v, int) and self.text(s, e).isdigit():
            self.add("off_by_one", node.lineno, s, e, str(v + 1))
            if v > 0:
                self.add("off_by_one", node.lineno, s, e, str(v - 1))
        elif isinstance(v, str) and 0 < len(v) <= 20 and "\n" not in v and node.lineno == node.end_lineno:
            self.add("wrong_constant", node.lineno, s, e, '""')


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _negated(node: ast.expr, text: str) -> str:
    simple = isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant)) and "\n" not in text
    return f"not {text}" if simple else f"not ({text})"
