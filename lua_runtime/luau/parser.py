"""Parsing and syntax diagnostics: type-free Luau text in, a tree-sitter tree out, or a
``LuauSyntaxError`` that reads like Luau's own.

tree-sitter parses valid code in linear time, but its error recovery is quadratic on a long run of
errors (65,000 commas: 14 s). So the syntax check (``syntax.py``) reads the tokens first, and
tree-sitter only parses code the check accepts. A CPU backstop (``PARSE_CPU_SECONDS``) stops a
parse that still runs long, which only a disagreement between the check and tree-sitter's grammar
could cause, with "too complex to parse".

The syntax check words its errors as Luau does. The most common mistakes are unbalanced blocks and
brackets (``end``, ``until``, ``)``), which are explained from the tokens when they come no later
than the error found; where tree-sitter alone sees an error, it is described from the first ERROR
or MISSING node of its tree.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import tree_sitter
import tree_sitter_luau

from lua_runtime.luau.errors import LuauSyntaxError, Positions
from lua_runtime.luau.lexer import EOF, INTERP_BEGIN, INTERP_END, INTERP_MID, KEYWORDS, NAME, OP, Token
from lua_runtime.luau.limits import PARSE_CPU_SECONDS
from lua_runtime.luau.syntax import find_syntax_problem

LANGUAGE = tree_sitter.Language(tree_sitter_luau.language())

# A tree-sitter Parser is not safe to share between threads; guild VMs translate on worker threads.
_local = threading.local()

TOO_COMPLEX = "This script is too complex to parse; simplify the code near this line"


def parse(text: str, tokens: list[Token]) -> tree_sitter.Tree:
    """The tree of ``text`` (type-free Luau); ``tokens`` are its tokens (none of the erased types)."""
    problem = find_syntax_problem(tokens, text)
    if problem is not None:
        positions = Positions(text)
        error = positions.error(tokens[problem.index].start, problem.message)
        # An unbalanced block or bracket no later than the problem explains it best.
        unbalanced = None if problem.conclusive else check_blocks(tokens, positions)
        if unbalanced is not None and (unbalanced.line, unbalanced.column) <= (error.line, error.column):
            raise unbalanced
        raise error
    tree = parse_text(text)
    if tree.root_node.has_error:  # the syntax check let through what tree-sitter refuses
        positions = Positions(text)
        raise check_blocks(tokens, positions) or describe_error(tree, text, tokens, positions)
    return tree


def parse_text(text: str) -> tree_sitter.Tree:
    """tree-sitter's tree of ``text``, or "too complex to parse" past PARSE_CPU_SECONDS.

    The tree is read from a callback (the only way to get a progress callback), so it holds no
    copy of the text: ``Node.text`` on it crashes py-tree-sitter 0.26.1. Slice the text instead.
    """
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = tree_sitter.Parser(LANGUAGE)
    data = memoryview(text.encode())
    deadline = time.thread_time() + PARSE_CPU_SECONDS
    reached = [0]

    def read(offset: int, _point: tree_sitter.Point) -> memoryview:
        return data[offset:]

    def progress(offset: int, _has_error: bool) -> bool:
        # Must not raise: tree-sitter's Python binding cannot take an exception from here.
        try:
            reached[0] = offset
            return time.thread_time() > deadline
        except BaseException:
            return True

    try:
        return parser.parse(read, progress_callback=progress)
    except ValueError:  # the parse was cancelled: the parser must forget it before the next one
        parser.reset()
        offset = len(bytes(data[: reached[0]]).decode(errors="ignore"))
        raise Positions(text).error(offset, TOO_COMPLEX) from None


# Blocks and brackets --------------------------------------------------------------------------------

_CLOSER = {"(": ")", "[": "]", "{": "}", INTERP_BEGIN: "}"}
_BLOCK_KINDS = frozenset({"function", "do", "while", "for", "if"})
# After these, `if` begins an if-then-else expression rather than a statement.
_EXPRESSION_KEYWORDS = frozenset(
    {"return", "and", "or", "not", "in", "until", "while", "if", "elseif", "local"}
)


@dataclass
class _Open:
    token: Token
    kind: str  # "function", "do", "while", "for", "if", "repeat", "ifexpr", or the bracket
    seen_do: bool = False
    else_token: Token | None = None  # an if block's `else`, after which only `end` may come


def check_blocks(tokens: list[Token], positions: Positions) -> LuauSyntaxError | None:
    """The first unbalanced block or bracket, as Luau would report it, or None if all match."""
    stack: list[_Open] = []
    expression_next = False  # set after the `then`/`else` of an if-expression

    def mismatch(token: Token) -> LuauSyntaxError:
        top = stack[-1]
        if top.kind == "ifexpr":
            return positions.error(
                token.start, f"Expected 'else' when parsing if then else expression, got {token.describe()}"
            )
        closer = {"repeat": "until"}.get(top.kind) or _CLOSER.get(top.kind) or "end"
        opened = top.else_token or top.token  # Luau names the last `else` of an if block
        opener = "{" if top.kind == INTERP_BEGIN else opened.text
        line, _ = positions.line_col(opened.start)
        return positions.error(
            token.start, f"Expected '{closer}' (to close '{opener}' at line {line}), got {token.describe()}"
        )

    for index, token in enumerate(tokens):
        after_expression_keyword, expression_next = expression_next, False
        previous = tokens[index - 1] if index else None
        if token.kind == EOF:
            return mismatch(token) if stack else None
        if token.kind == NAME:
            word = token.text
            if word == "function":
                stack.append(_Open(token, "function"))
            elif word in ("while", "for"):
                stack.append(_Open(token, word))
            elif word == "do":
                if stack and stack[-1].kind in ("while", "for") and not stack[-1].seen_do:
                    stack[-1].seen_do = True
                    stack[-1].token = token  # Luau names a loop's `do` as what `end` closes
                else:
                    stack.append(_Open(token, "do"))
            elif word == "repeat":
                stack.append(_Open(token, "repeat"))
            elif word == "if":
                in_expression = after_expression_keyword or (
                    previous is not None
                    and (
                        (previous.kind == OP and previous.text not in (")", "]", "}", "...", ";"))
                        or previous.kind in (INTERP_BEGIN, INTERP_MID)
                        or (previous.kind == NAME and previous.text in _EXPRESSION_KEYWORDS)
                    )
                )
                stack.append(_Open(token, "ifexpr" if in_expression else "if"))
            elif word in ("then", "elseif", "else"):
                if not stack or stack[-1].kind not in ("if", "ifexpr"):
                    return mismatch(token) if stack else positions.error(token.start, f"Unexpected '{word}'")
                top = stack[-1]
                if top.else_token is not None and word != "then":
                    line, _ = positions.line_col(top.else_token.start)
                    return positions.error(
                        token.start, f"Expected 'end' (to close 'else' at line {line}), got '{word}'"
                    )
                if word == "else" and top.kind == "if":
                    top.else_token = token
                if top.kind == "ifexpr":
                    expression_next = True
                    if word == "else":
                        stack.pop()
            elif word == "end":
                if not stack:
                    return positions.error(token.start, "Expected <eof>, got 'end'")
                if stack[-1].kind not in _BLOCK_KINDS:
                    return mismatch(token)
                stack.pop()
            elif word == "until":
                if not stack:
                    return positions.error(token.start, "Expected <eof>, got 'until'")
                if stack[-1].kind != "repeat":
                    return mismatch(token)
                stack.pop()
        elif token.kind == OP and token.text in "([{":
            stack.append(_Open(token, token.text))
        elif token.kind == OP and token.text in ")]}":
            if not stack:
                return positions.error(token.start, f"Unexpected '{token.text}'")
            if _CLOSER.get(stack[-1].kind) != token.text:
                return mismatch(token)
            stack.pop()
        elif token.kind == INTERP_BEGIN:
            stack.append(_Open(token, INTERP_BEGIN))
        elif token.kind in (INTERP_MID, INTERP_END):
            if not stack or stack[-1].kind != INTERP_BEGIN:
                return mismatch(token) if stack else positions.error(token.start, "Unexpected '}'")
            if token.kind == INTERP_END:
                stack.pop()
    return None


# Anything else, from the tree -----------------------------------------------------------------------


def describe_error(
    tree: tree_sitter.Tree, text: str, tokens: list[Token], positions: Positions
) -> LuauSyntaxError:
    """A syntax error for the culprit of ``tree`` (see ``_culprit``)."""
    byte_to_char = _ByteOffsets(text)
    data = text.encode()
    node = _culprit(tree.root_node, data)
    if node is None:  # has_error with neither kind of node cannot happen; be safe all the same
        return positions.error(0, "Syntax error")
    if node.type == "identifier" and not node.is_missing:
        # Recovering, tree-sitter may take a keyword for a name (`a +` then `end`).
        word = data[node.start_byte : node.end_byte].decode()
        expected = "Expected expression, got" if node.parent.type in _EXPRESSION_PARENTS else "Unexpected"
        return positions.error(byte_to_char(node.start_byte), f"{expected} '{word}'")
    start = byte_to_char(node.start_byte)
    end = byte_to_char(node.end_byte)
    following = next((t for t in tokens if t.start >= end), tokens[-1])
    if node.is_missing:
        what = "expression" if node.type == "identifier" else f"'{node.type}'"
        return positions.error(following.start, f"Expected {what}, got {following.describe()}")
    if node.parent is not None and node.parent.type == "return_statement":
        # tree-sitter keeps the return and files its value as the error; the culprit is what follows
        return positions.error(
            following.start, f"Expected 'end' or <eof> after return, got {following.describe()}"
        )
    inside = [t for t in tokens if start <= t.start < end]
    first = inside[0] if inside else following
    if first.kind == NAME and first.text == "goto":
        return positions.error(first.start, "Luau has no goto statement")
    at_statement = (
        node.parent is not None
        and node.parent.type in ("chunk", "block")
        and (node.prev_sibling is None or node.prev_sibling.type not in ("=", ",", "("))
    )
    if at_statement and first.kind == NAME and first.text not in _STATEMENT_KEYWORDS:
        return positions.error(first.start, "Incomplete statement: expected assignment or a function call")
    if at_statement and first.kind == NAME:
        rest = [*inside[1:], following]
        near = next((t for t in rest if t.kind != NAME or t.text in _STATEMENT_KEYWORDS), following)
        return positions.error(first.start, f"Malformed '{first.text}' statement near {near.describe()}")
    return positions.error(first.start, f"Unexpected {first.describe()}")


def _culprit(root: tree_sitter.Node, data: bytes) -> tree_sitter.Node | None:
    """The node a syntax error is reported at: a keyword tree-sitter took for a name, unless an
    error ends before it; else the first ERROR or MISSING node; None in a tree without errors."""
    node = _first_error(root) if root.has_error else None
    keyword = _keyword_as_name(root, data)
    if keyword is not None and (node is None or node.end_byte > keyword.start_byte):
        return keyword
    return node


_STATEMENT_KEYWORDS = frozenset(
    {"local", "function", "for", "while", "repeat", "if", "return", "do", "break", "end", "until"}
    | {"else", "elseif"}
)


_EXPRESSION_PARENTS = frozenset(
    {"binary_expression", "unary_expression", "expression_list", "arguments", "parenthesized_expression"}
    | {"bracket_index_expression", "field", "interpolation"}
)


def _keyword_as_name(root: tree_sitter.Node, data: bytes) -> tree_sitter.Node | None:
    """The first identifier node whose text (in ``data``, the parsed text) is a keyword."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "identifier" and data[node.start_byte : node.end_byte].decode() in KEYWORDS:
            return node
        stack.extend(reversed(node.children))
    return None


def _first_error(root: tree_sitter.Node) -> tree_sitter.Node | None:
    """The ERROR or MISSING node that starts first (the outermost one at that position)."""
    best: tree_sitter.Node | None = None
    cursor = root.walk()
    while True:
        node = cursor.node
        descend = node.has_error and (best is None or node.start_byte < best.start_byte)
        if (node.type == "ERROR" or node.is_missing) and (best is None or node.start_byte < best.start_byte):
            best = node
            descend = False
        if descend and cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return best


class _ByteOffsets:
    """Maps UTF-8 byte offsets of ``text`` back to character offsets."""

    def __init__(self, text: str) -> None:
        self._ascii = text.isascii()
        self._data = text.encode()

    def __call__(self, byte_offset: int) -> int:
        if self._ascii:
            return byte_offset
        return len(self._data[:byte_offset].decode(errors="ignore"))
