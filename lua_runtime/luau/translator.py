"""Translation: the tree-sitter tree of type-free Luau in, Lua 5.4 source out.

The output is the input text with only the Luau-only constructs rewritten, each in place: every
piece of the author's text keeps its line, and what is added never contains a newline, so a runtime
error names the author's line. What changes:

- numeric literals become floats (Luau has no integers: 10/2 prints 5, 8 // 0 is inf), and ``#x``
  becomes a float too; ``0b`` and ``_`` literals are spelled out; ``a % b`` calls ``__luau_mod``;
- ``a .. b`` passes each operand that may be a number through ``__luau_cat`` (Luau's formatting);
- interpolated strings become concatenations of literals and ``__luau_str(expr)``;
- ``x op= e`` becomes ``x = x op (e)``, through locals when the target has subexpressions, so
  that they are evaluated once;
- ``continue`` becomes ``goto __luau_continue`` with the label at the end of the loop body;
- ``for ... in e do`` iterates ``__luau_iter(e)`` (generalized iteration, ``__iter``);
- ``if c then a else b`` expressions become ``c and a or b`` when ``a`` is a literal that cannot be
  false, and an immediately called closure otherwise.

Lua 5.4 syntax that Luau does not have (``<const>``/``<close>`` attributes) and Luau that Lua
cannot express here (``goto`` as a name) are refused as syntax errors.
"""

from __future__ import annotations

from collections.abc import Callable

import tree_sitter

from lua_runtime.luau.errors import LuauSyntaxError, Positions

#: Deepest tree the translator walks; Luau itself refuses deeply nested code in the same way.
MAX_DEPTH = 200

CONTINUE_LABEL = "__luau_continue"
_TOO_DEEP = "Exceeded allowed recursion depth; simplify your code to make it compile"
_LOOPS = frozenset({"while_statement", "for_statement", "repeat_statement"})
_FUNCTIONS = frozenset({"function_declaration", "function_definition"})
# Literals that can never be false or nil: `if c then <literal> else b` may become `c and <literal> or b`.
_TRUTHY_LITERALS = frozenset({"number", "string", "true", "table_constructor", "function_definition"})
# Keys that may be evaluated twice: `t[k] += 1` needs no temporaries for them.
_PLAIN_KEYS = frozenset({"identifier", "number", "string", "true", "false"})


def translate_tree(text: str, tree: tree_sitter.Tree) -> str:
    """The Lua 5.4 source for ``text`` (type-free Luau) parsed as ``tree``."""
    translator = _Translator(text)
    try:
        return translator.emit(tree.root_node)
    except RecursionError:
        # MAX_DEPTH counts tree levels; a few constructs (chains of if-expressions) take more
        # Python frames per level than it allows for, and the caller's stack counts too.
        raise translator.error(translator.deepest, _TOO_DEEP) from None


def lua_number(literal: str) -> str:
    """A Luau numeric literal as a Lua 5.4 float literal of the same value."""
    digits = literal.replace("_", "")
    prefix = digits[:2].lower()
    if prefix in ("0x", "0b"):
        # Luau reads a hexadecimal or binary literal as an unsigned 64-bit integer (saturating).
        value = min(int(digits[2:], 16 if prefix == "0x" else 2), 2**64 - 1)
        return repr(float(value))
    if any(mark in digits for mark in ".eE"):
        return digits
    return digits + ".0"


class _Loop:
    """A loop being translated: whether a `continue` in it (not in a nested loop) needs the label."""

    __slots__ = ("has_continue",)

    def __init__(self) -> None:
        self.has_continue = False


class _Translator:
    def __init__(self, text: str) -> None:
        self.data = text.encode()
        self.positions = Positions(text)
        # The loops around the node being translated, innermost last; None marks a function
        # boundary (a `continue` never reaches past it).
        self.loops: list[_Loop | None] = []
        self.depth = 0
        self.deepest: tree_sitter.Node | None = None  # the last node entered, for a depth error

    # Plumbing -----------------------------------------------------------------------------------------

    def source(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    def node_text(self, node: tree_sitter.Node) -> str:
        return self.source(node.start_byte, node.end_byte)

    def error(self, node: tree_sitter.Node, message: str) -> LuauSyntaxError:
        offset = len(self.data[: node.start_byte].decode())
        return self.positions.error(offset, message)

    def emit(self, node: tree_sitter.Node) -> str:
        """The translation of ``node``."""
        self.depth += 1
        self.deepest = node
        if self.depth > MAX_DEPTH:
            raise self.error(node, _TOO_DEEP)
        try:
            handler = _HANDLERS.get(node.type)
            return handler(self, node) if handler else self.children(node)
        finally:
            self.depth -= 1

    def children(
        self, node: tree_sitter.Node, replace: Callable[[tree_sitter.Node], str | None] | None = None
    ) -> str:
        """The text of ``node`` with each child translated (or replaced, where ``replace`` answers)."""
        if node.child_count == 0:
            return self.node_text(node)
        parts = []
        position = node.start_byte
        for child in node.children:
            parts.append(self.source(position, child.start_byte))
            replacement = replace(child) if replace else None
            parts.append(self.emit(child) if replacement is None else replacement)
            position = child.end_byte
        parts.append(self.source(position, node.end_byte))
        return "".join(parts)

    # Numbers ------------------------------------------------------------------------------------------

    def number(self, node: tree_sitter.Node) -> str:
        return lua_number(self.node_text(node))

    def unary_expression(self, node: tree_sitter.Node) -> str:
        text = self.children(node)
        if node.children[0].type == "#":
            # Luau's # gives a double; multiplying by 1.0 keeps Lua 5.4 from making it an integer.
            return f"({text} * 1.0)"
        return text

    # Strings and concatenation ------------------------------------------------------------------------

    def binary_expression(self, node: tree_sitter.Node) -> str:
        operator = node.child_by_field_name("left").next_sibling
        if operator.type == "%":
            # Luau's a - floor(a / b) * b, not Lua 5.4's fmod (see __luau_mod); `%` becomes the comma.
            # The parentheses keep `return a % b` from being a tail call, which would lose the
            # author's line from an error raised in the helper.
            operands = self.children(node, lambda child: "," if child == operator else None)
            return f"(__luau_mod({operands}))"
        if operator.type != "..":
            return self.left_chain(node)
        return self.children(node, lambda child: self.concat_operand(child) if child.is_named else None)

    def left_chain(self, node: tree_sitter.Node) -> str:
        """A left-associative chain (`a + b - c < d`, `x or y or z`) translated without recursing
        down its left spine, which is as deep as the chain is long: Lua reads such chains in a
        loop, so a long one is valid Lua, however deep its tree."""
        spine = [node]
        while True:
            left = spine[-1].child_by_field_name("left")
            if left.type != "binary_expression" or _operator(left) in ("..", "%"):
                break
            spine.append(left)
        text = self.emit(spine[-1].child_by_field_name("left"))
        for link in reversed(spine):
            left = link.child_by_field_name("left")
            text = self.children(link, lambda child, left=left, done=text: done if child == left else None)
        return text

    def concat_operand(self, node: tree_sitter.Node) -> str | None:
        if node.type == "comment" or _is_string_valued(node):
            return None
        return f"__luau_cat({self.emit(node)})"

    def string(self, node: tree_sitter.Node) -> str:
        if self.data[node.start_byte : node.start_byte + 1] != b"`":
            return self.node_text(node)
        parts: list[str] = []
        literal_start = node.start_byte + 1
        for child in node.children:
            if child.type != "interpolation":
                continue
            parts.append(_lua_string(self.source(literal_start, child.start_byte)))
            inner = self.children(child, lambda c: "" if c.type in ("{", "}") else None)
            expression = child.named_children[0] if child.named_child_count == 1 else None
            is_string = expression is not None and expression.type == "string"
            parts.append(inner if is_string else f"__luau_str({inner})")
            literal_start = child.end_byte
        parts.append(_lua_string(self.source(literal_start, node.end_byte - 1)))
        pieces = [part for part in parts if part != '""'] or ['""']
        return pieces[0] if len(pieces) == 1 and pieces[0][0] == '"' else f"({' .. '.join(pieces)})"

    def arguments(self, node: tree_sitter.Node) -> str:
        first = node.children[0] if node.child_count else None
        if first is not None and first.type == "string" and self.node_text(first).startswith("`"):
            message = "Interpolated strings cannot be used as call arguments without parentheses"
            raise self.error(first, message)
        return self.children(node)

    # Names --------------------------------------------------------------------------------------------

    def identifier(self, node: tree_sitter.Node) -> str:
        text = self.node_text(node)
        if text == "goto":
            # A Lua 5.4 keyword: fine as a field name (see dot_index_expression and field), not as a name.
            message = "'goto' cannot be used as a name here (it is reserved in the Lua 5.4 runtime)"
            raise self.error(node, message)
        return text

    def dot_index_expression(self, node: tree_sitter.Node) -> str:
        name = node.child_by_field_name("field")
        if name is not None and self.node_text(name) == "goto":
            return f'{self.emit(node.child_by_field_name("table"))}["goto"]'
        return self.children(node)

    def field(self, node: tree_sitter.Node) -> str:
        name = node.child_by_field_name("name")
        if name is not None and name.type == "identifier" and self.node_text(name) == "goto":
            return self.children(node, lambda child: '["goto"]' if child == name else None)
        return self.children(node)

    def attribute(self, node: tree_sitter.Node) -> str:
        attribute = self.node_text(node)
        raise self.error(node, f"Unexpected '<' (Luau has no local attributes such as {attribute})")

    # Compound assignment ------------------------------------------------------------------------------

    def update_statement(self, node: tree_sitter.Node) -> str:
        targets, operator, values = node.children[0], node.children[1], node.children[2]
        if targets.named_child_count != 1 or values.named_child_count != 1:
            raise self.error(node, "Compound assignment takes exactly one variable and one value")
        target = targets.named_children[0]
        binary = operator.type[:-1]
        gap = self.source(target.end_byte, operator.start_byte)
        value_gap = self.source(operator.end_byte, values.start_byte)
        value = self.emit(values)
        if binary == "..":
            value = value if _is_string_valued(values.named_children[0]) else f"__luau_cat({value})"
        elif binary != "%":
            value = f"({value})"

        def assign(write: str, read: str) -> str:
            if binary == "%":
                return f"{write}{gap}= __luau_mod({read},{value_gap}{value})"
            read = f"__luau_cat({read})" if binary == ".." else read
            return f"{write}{gap}= {read} {binary}{value_gap}{value}"

        if target.type == "identifier":
            name = self.emit(target)
            return assign(name, name)
        table = target.child_by_field_name("table")
        if target.type == "dot_index_expression":
            key_name = self.node_text(target.child_by_field_name("field"))
            key = '["goto"]' if key_name == "goto" else f".{key_name}"
            if table.type == "identifier":
                base = self.emit(table)
                return assign(f"{base}{key}", f"{base}{key}")
            temp = self.temporary_name(table, values)
            head = f"do local {temp} = {self.emit(table)}; "
            return head + assign(f"{temp}{key}", f"{temp}{key}") + " end"
        if target.type == "bracket_index_expression":
            index = target.child_by_field_name("field")
            if table.type == "identifier" and index.type in _PLAIN_KEYS:
                access = f"{self.emit(table)}[{self.emit(index)}]"
                return assign(access, access)
            temp = self.temporary_name(table, values)
            head = f"do local {temp}, __luau_k = {self.emit(table)}, {self.emit(index)}; "
            return head + assign(f"{temp}[__luau_k]", f"{temp}[__luau_k]") + " end"
        raise self.error(target, "Cannot assign to this expression")

    def temporary_name(self, table: tree_sitter.Node, value: tree_sitter.Node) -> str:
        """The local that holds a compound assignment's table while the statement runs.

        Lua names it in "attempt to index a nil value (local '...')", so it takes the table's own
        field name where it can (`a.stats.hits += 1` fails with local 'stats'): that is, unless the
        value mentions the same name, which the local would then hide.
        """
        if table.type == "dot_index_expression":
            name = self.node_text(table.child_by_field_name("field"))
            used = {self.node_text(n) for n in _referenced_names(value)}
            if name not in used and name != "goto" and name.isidentifier():
                return name
        return "__luau_t"

    # Loops and continue -------------------------------------------------------------------------------

    def loop(self, node: tree_sitter.Node) -> str:
        loop = _Loop()
        self.loops.append(loop)
        try:
            if node.type == "repeat_statement":
                return self.repeat_loop(node)
            body = node.child_by_field_name("body")
            wrap_return = _has_direct_continue(body)
            closing_end = node.children[-1]

            def replace(child: tree_sitter.Node) -> str | None:
                if child == body:
                    return self.block(child, wrap_return)
                if child == closing_end and loop.has_continue:  # the body is done: has_continue is known
                    return f"::{CONTINUE_LABEL}:: end"
                return None

            return self.children(node, replace)
        finally:
            self.loops.pop()

    def block(self, block: tree_sitter.Node, wrap_trailing_return: bool) -> str:
        """A loop body; a trailing `return` is wrapped in do...end so that the label may follow it."""
        statements = [child for child in block.named_children if child.type != "comment"]
        last = statements[-1] if statements else None
        if not wrap_trailing_return or last is None or last.type != "return_statement":
            return self.emit(block)
        return self.children(block, lambda child: f"do {self.emit(child)} end" if child == last else None)

    def repeat_loop(self, node: tree_sitter.Node) -> str:
        body = node.child_by_field_name("body")
        if body is None or not _has_direct_continue(body):
            return self.children(node)
        statements = [child for child in body.named_children if child.type != "comment"]
        first_jump = next(s for s in statements if _has_direct_continue(s))
        skipped = statements[statements.index(first_jump) :]
        condition = node.child_by_field_name("condition")
        declared = {name for statement in skipped for name in _declared_names(statement, self.node_text)}
        for name_node in _referenced_names(condition):
            name = self.node_text(name_node)
            if name in declared:
                continue_node = _first_continue(first_jump)
                line, _ = self.positions.line_col(len(self.data[: continue_node.start_byte].decode()))
                raise self.error(
                    name_node,
                    f"Local {name} used in the repeat..until condition is undefined because continue "
                    f"statement on line {line} jumps over it",
                )

        def body_part(child: tree_sitter.Node) -> str | None:
            text = self.emit(child)
            return f"do {text}" if child == first_jump else text

        def replace(child: tree_sitter.Node) -> str | None:
            if child == body:
                return self.children(body, body_part)
            if child.type == "until":
                return f"end ::{CONTINUE_LABEL}:: until"
            return None

        return self.children(node, replace)

    def continue_statement(self, node: tree_sitter.Node) -> str:
        loop = self.loops[-1] if self.loops else None
        if loop is None:
            raise self.error(node, "continue statement must be inside a loop")
        loop.has_continue = True
        return f"goto {CONTINUE_LABEL}"

    def break_statement(self, node: tree_sitter.Node) -> str:
        if not self.loops or self.loops[-1] is None:
            raise self.error(node, "break statement must be inside a loop")
        return self.children(node)

    def function(self, node: tree_sitter.Node) -> str:
        self.loops.append(None)
        try:
            return self.children(node)
        finally:
            self.loops.pop()

    def for_generic_clause(self, node: tree_sitter.Node) -> str:
        values = node.children[-1]

        def wrap(child: tree_sitter.Node) -> str | None:
            return f"__luau_iter({self.emit(child)})" if child == values else None

        return self.children(node, wrap)

    # If-then-else expressions -------------------------------------------------------------------------

    def if_expression(self, node: tree_sitter.Node) -> str:
        branches = [node, *(c for c in node.children if c.type in ("elseif_clause", "else_clause"))]
        if branches[-1].type != "else_clause":
            raise self.error(node, "Expected 'else' when parsing if then else expression")
        consequences = [branch.child_by_field_name("consequence") for branch in branches]
        if all(c is not None and c.type in _TRUTHY_LITERALS for c in consequences[:-1]):
            # `c1 and a1 or c2 and a2 or e` is exact when no a can be false or nil.
            return self.children(node, lambda child: self.if_as_and_or(child, node)) + ")"
        varargs = _uses_varargs(node)
        params = "..." if varargs else ""
        opening = f"(function({params}) if"
        text = self.children(node, lambda child: self.if_as_closure(child, node, opening))
        return f"{text} end end)({params})"

    def if_as_and_or(self, child: tree_sitter.Node, owner: tree_sitter.Node) -> str | None:
        if child.type == "if":
            return "(("
        if child.type == "then":
            return ") and ("
        if child.type == "elseif":
            return " or ("
        if child.type == "else":
            return " or ("
        if child.type in ("elseif_clause", "else_clause"):
            return self.children(child, lambda c: self.if_as_and_or(c, owner))
        consequence = child.parent.child_by_field_name("consequence") if child.parent is not None else None
        if child == consequence:
            return self.emit(child) + ")"
        return None

    def if_as_closure(self, child: tree_sitter.Node, owner: tree_sitter.Node, opening: str) -> str | None:
        if child.type == "if" and child.parent == owner:
            return opening
        if child.type in ("then", "else"):
            return f"{child.type} return ("
        if child.type in ("elseif_clause", "else_clause"):
            return self.children(child, lambda c: self.if_as_closure(c, owner, opening))
        consequence = child.parent.child_by_field_name("consequence") if child.parent is not None else None
        if child == consequence:
            return self.emit(child) + ")"
        return None


_HANDLERS: dict[str, Callable[[_Translator, tree_sitter.Node], str]] = {
    "number": _Translator.number,
    "unary_expression": _Translator.unary_expression,
    "binary_expression": _Translator.binary_expression,
    "string": _Translator.string,
    "arguments": _Translator.arguments,
    "identifier": _Translator.identifier,
    "dot_index_expression": _Translator.dot_index_expression,
    "field": _Translator.field,
    "attribute": _Translator.attribute,
    "update_statement": _Translator.update_statement,
    "while_statement": _Translator.loop,
    "for_statement": _Translator.loop,
    "repeat_statement": _Translator.loop,
    "continue_statement": _Translator.continue_statement,
    "break_statement": _Translator.break_statement,
    "function_declaration": _Translator.function,
    "function_definition": _Translator.function,
    "for_generic_clause": _Translator.for_generic_clause,
    "if_expression": _Translator.if_expression,
}


# Tree queries -------------------------------------------------------------------------------------


def _operator(binary: tree_sitter.Node) -> str:
    return binary.child_by_field_name("left").next_sibling.type


def _is_string_valued(node: tree_sitter.Node) -> bool:
    """A string literal, an interpolated string or another concatenation: never a number."""
    if node.type == "string":
        return True
    if node.type == "binary_expression":
        left = node.child_by_field_name("left")
        return left is not None and left.next_sibling is not None and left.next_sibling.type == ".."
    return False


def _walk_same_loop(node: tree_sitter.Node):
    """``node`` and its descendants, not entering nested loops' bodies or functions."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for child in reversed(current.children):
            if child.type in _FUNCTIONS:
                continue
            if child.type in _LOOPS:
                # A nested loop's header still belongs to this loop; only its body does not.
                stack.extend(c for c in reversed(child.children) if c.type != "block")
                continue
            stack.append(child)


def _has_direct_continue(node: tree_sitter.Node | None) -> bool:
    return node is not None and any(n.type == "continue_statement" for n in _walk_same_loop(node))


def _first_continue(node: tree_sitter.Node) -> tree_sitter.Node:
    return next(n for n in _walk_same_loop(node) if n.type == "continue_statement")


def _uses_varargs(node: tree_sitter.Node) -> bool:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "vararg_expression":
            return True
        stack.extend(c for c in current.children if c.type not in _FUNCTIONS)
    return False


def _declared_names(statement: tree_sitter.Node, text: Callable[[tree_sitter.Node], str]) -> list[str]:
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


def _referenced_names(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    """Identifiers used as variables in ``node`` (not field or method names)."""
    found = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "identifier":
            parent = current.parent
            field_name = parent.field_name_for_child(parent.children.index(current)) if parent else None
            is_key = parent is not None and parent.type == "field" and field_name == "name"
            if field_name not in ("field", "method") and not is_key:
                found.append(current)
        stack.extend(c for c in current.children if c.type not in _FUNCTIONS)
    return found


def _lua_string(raw: str) -> str:
    """The literal text of an interpolated string as a Lua double-quoted string."""
    out = []
    index, size = 0, len(raw)
    while index < size:
        char = raw[index]
        if char == "\\" and index + 1 < size:
            following = raw[index + 1]
            out.append(following if following in "{}`" else char + following)
            index += 2
            continue
        out.append('\\"' if char == '"' else char)
        index += 1
    return '"' + "".join(out) + '"'
