"""Parsing and syntax diagnostics: type-free Luau text in, a tree-sitter tree out, or a
``LuauSyntaxError`` that reads like Luau's own.

tree-sitter always produces a tree; a syntax error shows up as ERROR and MISSING nodes, which say
where things went wrong but not why. The most common mistakes are unbalanced blocks and brackets
(``end``, ``until``, ``)``), so those are explained first from the tokens, the way Luau words them;
anything else is described from the first ERROR or MISSING node.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import tree_sitter
import tree_sitter_luau

from lua_runtime.luau.errors import LuauSyntaxError, Positions
from lua_runtime.luau.lexer import EOF, INTERP_BEGIN, INTERP_END, INTERP_MID, KEYWORDS, NAME, OP, Token

LANGUAGE = tree_sitter.Language(tree_sitter_luau.language())

# A tree-sitter Parser is not safe to share between threads; guild VMs translate on worker threads.
_local = threading.local()


def parse(text: str, tokens: list[Token]) -> tree_sitter.Tree:
    """The tree of ``text`` (type-free Luau). ``tokens`` are the source's tokens, for diagnostics."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = tree_sitter.Parser(LANGUAGE)
    tree = parser.parse(text.encode())
    if tree.root_node.has_error:
        positions = Positions(text)
        raise check_blocks(tokens, positions) or describe_error(tree, text, tokens, positions)
    return tree


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
    """A syntax error for the first ERROR or MISSING node of ``tree``."""
    byte_to_char = _ByteOffsets(text)
    node = _first_error(tree.root_node)
    keyword = _keyword_as_name(tree.root_node)
    if keyword is not None and (node is None or node.end_byte > keyword.start_byte):
        # Recovering, tree-sitter may take a keyword for a name (`a +` then `end`): unless an error
        # ends before it, that is the culprit.
        word = keyword.text.decode()
        expected = "Expected expression, got" if keyword.parent.type in _EXPRESSION_PARENTS else "Unexpected"
        return positions.error(byte_to_char(keyword.start_byte), f"{expected} '{word}'")
    if node is None:  # has_error with neither kind of node cannot happen; be safe all the same
        return positions.error(0, "Syntax error")
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


_STATEMENT_KEYWORDS = frozenset(
    {"local", "function", "for", "while", "repeat", "if", "return", "do", "break", "end", "until"}
    | {"else", "elseif"}
)


_EXPRESSION_PARENTS = frozenset(
    {"binary_expression", "unary_expression", "expression_list", "arguments", "parenthesized_expression"}
    | {"bracket_index_expression", "field", "interpolation"}
)


def _keyword_as_name(root: tree_sitter.Node) -> tree_sitter.Node | None:
    """The first identifier node whose text is a keyword, in a tree with errors."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "identifier" and node.text.decode() in KEYWORDS:
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
