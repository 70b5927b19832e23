"""The syntax check (``syntax.py``) accepts what tree-sitter-luau accepts, and nothing it refuses.

tree-sitter only parses what the check accepts, so that its error recovery (quadratic on a run of
errors) never runs: whatever the check lets through, tree-sitter must parse without an error, and
whatever valid Luau tree-sitter parses, the check must accept. Both are checked on generated
sources: soups of Luau token fragments (mostly invalid), and programs made from Luau's grammar
(valid), mutated by a token or two.
"""

from __future__ import annotations

import random

import pytest
import tree_sitter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lua_runtime.luau import LuauSyntaxError, translate
from lua_runtime.luau.erasure import erase_types
from lua_runtime.luau.lexer import KEYWORDS, tokenize
from lua_runtime.luau.parser import LANGUAGE
from lua_runtime.luau.syntax import find_syntax_problem

PARSER = tree_sitter.Parser(LANGUAGE)


def tree_sitter_accepts(text: str) -> bool:
    """No ERROR or MISSING node, and no keyword read as a name (tree-sitter reads `local then = 1`)."""
    data = text.encode()
    tree = PARSER.parse(data)
    if tree.root_node.has_error:
        return False
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "identifier" and data[node.start_byte : node.end_byte].decode() in KEYWORDS:
            return False
        stack.extend(node.children)
    return True


def verdicts(source: str) -> tuple[bool, bool] | None:
    """(the check accepts, tree-sitter accepts) for ``source``, or None if it is not made of
    tokens or its types are malformed (the check never sees those)."""
    try:
        text, tokens = erase_types(source, tokenize(source))
    except LuauSyntaxError:
        return None
    if text.lstrip().startswith("#"):  # tree-sitter reads a first line `#...` as a shebang
        return None
    return find_syntax_problem(tokens, text) is None, tree_sitter_accepts(text)


FRAGMENTS = [
    *("local", "function", "end", "if", "then", "else", "elseif", "while", "do", "for", "in", "repeat"),
    *("until", "return", "break", "continue", "type", "export", "goto", "not", "and", "or", "nil", "true"),
    *("x", "y", "f", "t", "x.y", "f()", "1", "'s'", "`a{", "}b`", "`c`", "=", "==", ",", ";", "(", ")"),
    *("{", "}", "[", "]", ".", ":", "..", "...", "+", "-", "*", "/", "//", "%", "^", "#", "<", ">"),
    *("<=", "~=", "+=", "..=", "::", "->", "?", "|", "&", "@native", "typeof", "<T>", ": number"),
]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12).map(" ".join))
def test_what_the_check_accepts_tree_sitter_parses(source: str) -> None:
    found = verdicts(source)
    if found is not None:
        check, tree_sitter_ok = found
        assert tree_sitter_ok or not check, "tree-sitter would have to recover from an error"


# Programs from the grammar -------------------------------------------------------------------------------


class Programs:
    """Random Luau programs, statement by statement, from Luau's grammar (types included)."""

    NAMES = ("a", "b", "t", "f", "x", "self", "string", "typeof", "goto")
    LITERALS = ("1", "0x1F", "1e3", ".5", "1_000", "'s'", '"q"', "[[l]]", "nil", "true", "false", "`t`")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    def name(self) -> str:
        return self.pick(*self.NAMES[:-1])  # `goto` only as a field: Lua 5.4 reserves it

    def several(self, make, low: int = 0, high: int = 3, separator: str = ", ") -> str:
        return separator.join(make() for _ in range(self.rng.randint(low, high)))

    def expression(self, depth: int) -> str:
        if depth <= 0 or self.rng.random() < 0.3:
            return self.pick(*self.LITERALS, self.name(), "...", f"`a{{{self.name()}}}b`")
        d = depth - 1
        return self.rng.choice(
            [
                lambda: (
                    f"{self.expression(d)} {self.pick('+', '-', '*', '/', '//', '%', '^', '..')} {self.expression(d)}"
                ),
                lambda: (
                    f"{self.expression(d)} {self.pick('==', '~=', '<', '<=', 'and', 'or')} {self.expression(d)}"
                ),
                lambda: self.pick("-", "not ", "#") + self.expression(d),
                lambda: f"({self.expression(d)})",
                lambda: "{" + self.several(lambda: self.field(d)) + "}",
                lambda: "{" + self.several(lambda: self.field(d), 1) + self.pick(",", ";") + "}",
                lambda: f"function({self.parameters()}) {self.block(d)} end",
                lambda: f"if {self.expression(d)} then {self.expression(d)} else {self.expression(d)}",
                lambda: f"`x{{ {self.expression(d)} }}y{{ {self.expression(d)} }}z`",
                lambda: f"({self.expression(d)} :: any)",
                lambda: self.prefix(d),
            ]
        )()

    def field(self, depth: int) -> str:
        return self.pick(
            self.expression(depth),
            f"{self.name()} = {self.expression(depth)}",
            f"[ {self.expression(depth)} ] = {self.expression(depth)}",
            f"goto = {self.expression(depth)}",
        )

    def prefix(self, depth: int, starts_statement: bool = False) -> str:
        # A statement never starts with `(`: after another statement, it would call its end.
        parenthesized = not starts_statement and self.rng.random() < 0.3
        text = f"({self.expression(depth)})" if parenthesized else self.name()
        for _ in range(self.rng.randint(0, 3)):
            text += self.pick(
                f".{self.name()}",
                ".goto",
                f"[ {self.expression(depth)} ]",
                f":{self.name()}({self.several(lambda: self.expression(depth))})",
                f"({self.several(lambda: self.expression(depth))})",
                "'s'",
                "{}",
            )
        return text

    def variable(self, depth: int) -> str:
        prefix = self.prefix(depth, starts_statement=True)
        return self.pick(self.name(), f"{prefix}.{self.name()}", f"{prefix}[1]")

    def parameters(self) -> str:
        return self.pick("", "a", "a: number", "a, b", "...", "a, ...", "...: any", "a: { string }?, b")

    def statement(self, depth: int, in_loop: bool) -> str:
        d = depth - 1
        choices = [
            lambda: (
                f"local {self.several(lambda: self.name() + self.pick('', ': number', ': {{ T }}?'), 1, 2)}"
                + self.pick("", f" = {self.expression(d)}")
            ),
            lambda: f"{self.variable(d)} = {self.expression(d)}",
            lambda: f"{self.prefix(d, starts_statement=True)}({self.several(lambda: self.expression(d))})",
            lambda: (
                f"{self.variable(d)} {self.pick('+=', '-=', '*=', '/=', '//=', '%=', '^=', '..=')} {self.expression(d)}"
            ),
            lambda: self.pick(
                "type T = number", "export type U<A = string> = { A }", "type F = (number) -> ()"
            ),
            lambda: ";",
        ]
        if depth > 0:
            choices += [
                lambda: f"do {self.block(d, in_loop)} end",
                lambda: f"while {self.expression(d)} do {self.block(d, True)} end",
                lambda: f"repeat {self.block(d, True)} until {self.expression(d)}",
                lambda: (
                    f"if {self.expression(d)} then {self.block(d, in_loop)}"
                    + self.pick("", f" elseif {self.expression(d)} then {self.block(d, in_loop)}")
                    + self.pick("", f" else {self.block(d, in_loop)}")
                    + " end"
                ),
                lambda: f"for i = {self.expression(d)}, {self.expression(d)} do {self.block(d, True)} end",
                lambda: f"for k, v in {self.expression(d)} do {self.block(d, True)} end",
                lambda: (
                    f"function {self.name()}{self.pick('', '.a', ':m', '.a.b')}({self.parameters()}) {self.block(d)} end"
                ),
                lambda: f"local function {self.name()}<T>({self.parameters()}): T? {self.block(d)} end",
                lambda: f"@native function {self.name()}() {self.block(d)} end",
            ]
        if in_loop:
            choices += [lambda: "break", lambda: "continue"]
        return self.rng.choice(choices)()

    def block(self, depth: int, in_loop: bool = False) -> str:
        statements = [self.statement(depth, in_loop) for _ in range(self.rng.randint(0, 3))]
        if self.rng.random() < 0.2:
            statements.append(self.pick("return", f"return {self.expression(depth - 1)}"))
        return self.pick(" ", "\n").join(statements)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_the_check_and_tree_sitter_agree_on_programs_and_their_mutations(rng: random.Random) -> None:
    program = Programs(rng).block(rng.randint(1, 4))
    found = verdicts(program)
    assert found == (True, True), program
    try:
        assert translate(program).count("\n") == program.count("\n")
    except LuauSyntaxError as error:  # the one rule beyond the grammar a generated program may break
        assert "used in the repeat..until condition" in error.message, (error.message, program)
    words = program.split(" ")
    for _ in range(4):
        mutated = list(words)
        index = rng.randrange(len(mutated))
        operation = rng.randrange(3)
        if operation == 0:
            del mutated[index]
        elif operation == 1:
            mutated.insert(index, rng.choice(words))
        else:
            mutated[index] = rng.choice(words)
        found = verdicts(" ".join(mutated))
        if found is not None:
            check, tree_sitter_ok = found
            assert tree_sitter_ok or not check, " ".join(mutated)


# The check's own messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        (
            "local x = 1\nlocal y = x & 1",
            2,
            "Unexpected '&' (Luau has no bitwise operators; use the bit32 library)",
        ),
        ("local y = 1 << 2", 1, "Unexpected '<' (Luau has no bitwise operators; use the bit32 library)"),
        ("local y = ~1", 1, "Unexpected '~' (Luau has no bitwise operators; use the bit32 library)"),
        ("\ngoto done", 2, "Luau has no goto statement"),
        ("local then = 1", 1, "Unexpected 'then'"),
        ("local x = t.if", 1, "Expected identifier when parsing field name, got 'if'"),
        ("local x = t:local()", 1, "Expected identifier when parsing method name, got 'local'"),
        ("local f = function(..., a) end", 1, "Expected ')' (to close '(' at line 1), got ','"),
        ("if x\nprint(x) end", 2, "Expected 'then' when parsing if statement, got 'print'"),
        ("while x\n\tprint(x)\nend", 2, "Expected 'do' when parsing while loop, got 'print'"),
        ("for i in\n\tdo end", 2, "Expected expression, got 'do'"),
        ("for i do end", 1, "Expected '=' or 'in' when parsing for loop, got 'do'"),
        ("f() = 1", 1, "Assigned expression must be a variable or a field"),
        ("local a = 1\n(a) = 2", 2, "Assigned expression must be a variable or a field"),
        ("local t = {}\nt.x", 2, "Incomplete statement: expected assignment or a function call"),
        ("local x = f(a b)", 1, "Expected ')' (to close '(' at line 1), got 'b'"),
        ("local t = { a = 1 b = 2 }", 1, "Expected '}' (to close '{' at line 1), got 'b'"),
        ("local x = `a{1 2}`", 1, "Malformed interpolated string; did you forget to add a '}'?"),
        ("export = {}", 1, "A statement cannot begin with 'export' here; use another name"),
        ("local x = if a b else c", 1, "Expected 'then' when parsing if then else expression, got 'b'"),
        ("return 1\nprint(2)", 2, "Expected 'end' or <eof> after return, got 'print'"),
    ],
)
def test_errors_read_like_luau_and_name_their_line(source: str, line: int, message: str) -> None:
    with pytest.raises(LuauSyntaxError) as caught:
        translate(source)
    assert (caught.value.line, caught.value.message) == (line, message)


def test_an_unbalanced_block_before_the_error_explains_it_better() -> None:
    source = "local function f()\n\tif x then\n\t\tprint(x)\n\treturn 1\nend\nf() f()"
    with pytest.raises(LuauSyntaxError) as caught:
        translate(source)
    assert caught.value.line == 6
    assert caught.value.message == "Expected 'end' (to close 'function' at line 1), got <eof>"
