"""Questions the translator asks about the tree-sitter tree of a script.

None of them asks a node for its parent or its siblings: tree-sitter finds those by walking down
from the root, which in a deep tree (a chain ``a + a + ...`` of 30,000 links) would make the
translation quadratic. Each walks only the subtree it is given, with an explicit stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import tree_sitter

LOOPS = frozenset({"while_statement", "for_statement", "repeat_statement"})
FUNCTIONS = frozenset({"function_declaration", "function_definition"})


def operator_index(children: list[tree_sitter.Node]) -> int:
    """The index of a binary expression's operator among its children (comments may come first)."""
    return next(index for index, child in enumerate(children) if not child.is_named)


def is_string_valued(node: tree_sitter.Node) -> bool:
    """A string literal, an interpolated string or another concatenation: never a number."""
    if node.type == "string":
        return True
    if node.type == "binary_expression":
        children = node.children
        return children[operator_index(children)].type == ".."
    return False


def walk_same_loop(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """``node`` and its descendants, not entering nested loops' bodies or functions."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for child in reversed(current.children):
            if child.type in FUNCTIONS:
                continue
            if child.type in LOOPS:
                # A nested loop's header still belongs to this loop; only its body does not.
                stack.extend(c for c in reversed(child.children) if c.type != "block")
                continue
            stack.append(child)


def has_direct_continue(node: tree_sitter.Node | None) -> bool:
    return node is not None and any(n.type == "continue_statement" for n in walk_same_loop(node))


def first_continue(node: tree_sitter.Node) -> tree_sitter.Node:
    return next(n for n in walk_same_loop(node) if n.type == "continue_statement")


def declared_names(statement: tree_sitter.Node, text: Callable[[tree_sitter.Node], str]) -> list[str]:
    """Names a top-level statement of a block declares as locals."""
    if statement.type == "variable_declaration":
        declaration = statement.named_children[0]
        if declaration.type == "assignment_statement":
            declaration = declaration.named_children[0]
        return [text(n) for n in declaration.named_children if n.type == "identifier"]
    if statement.type == "function_declaration" and statement.children[0].type == "local":
        name = statement.child_by_field_name("name")
        return [text(name)] if name is not None else []
    return []


# Where an identifier child is not read as a variable here: a field or method name, a table key.
_NOT_VARIABLES = {
    "dot_index_expression": "field",
    "bracket_index_expression": "field",
    "method_index_expression": "method",
    "field": "name",
}


def referenced_names(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    """Identifiers used as variables in ``node`` (not field or method names), outside functions."""
    if node.type == "identifier":
        return [node]
    found = []
    stack = [node]
    while stack:
        current = stack.pop()
        field = _NOT_VARIABLES.get(current.type)
        not_a_variable = current.child_by_field_name(field) if field else None
        for child in current.children:
            if child.type == "identifier":
                if not_a_variable is None or child != not_a_variable:
                    found.append(child)
            elif child.type not in FUNCTIONS:
                stack.append(child)
    return found
