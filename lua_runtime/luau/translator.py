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

The walk is iterative and its output is a list of pieces joined once at the end, so time and
memory are linear in the size of the tree, however deep it is (a chain ``a + a + ...`` of 30,000
links is a tree 30,000 levels deep). Each node is expanded into *items*: text to write, child nodes
still to translate, and actions to run once what precedes them is written (closing a loop whose
``continue`` label depends on its body). How deep a program may nest is the syntax check's to
bound (``syntax.py``): the levels this translation adds are counted there.
"""

from __future__ import annotations

from collections.abc import Callable

import tree_sitter

from lua_runtime.luau.errors import LuauSyntaxError, Positions
from lua_runtime.luau.tree import (
    declared_names,
    first_continue,
    has_direct_continue,
    is_string_valued,
    operator_index,
    referenced_names,
)

#: What a node expands into: text to write, a node to translate, an action to run in turn.
Item = bytes | tree_sitter.Node | Callable[[], object]

CONTINUE_LABEL = "__luau_continue"
# Literals that can never be false or nil: `if c then <literal> else b` may become `c and <literal> or b`.
_TRUTHY_LITERALS = frozenset({"number", "string", "true", "table_constructor", "function_definition"})
# Keys that may be evaluated twice: `t[k] += 1` needs no temporaries for them.
_PLAIN_KEYS = frozenset({"identifier", "number", "string", "true", "false"})
# An interpolated string with up to this many pieces is one flat concatenation; a longer one is
# split in halves, recursively, so that Lua's parser nests log(pieces) levels deep, not pieces.
_FLAT_PIECES = 8


def translate_tree(text: str, tree: tree_sitter.Tree) -> str:
    """The Lua 5.4 source for ``text`` (type-free Luau) parsed as ``tree``."""
    translator = _Translator(text)
    root = tree.root_node
    # The root's range leaves out the spaces and line breaks before the first token: kept, so
    # that the lines after them stay where they are.
    before = translator.source(0, root.start_byte)
    after = translator.source(root.end_byte, len(translator.data))
    return before + translator.render(root) + after


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


def interpolation_levels(pieces: int) -> int:
    """Lua parser levels the translation of an interpolated string of ``pieces`` pieces (literal
    texts and expressions) puts around each of its expressions, beyond the one any expression
    takes: the parentheses around the whole, the depth of a piece in the concatenation (each
    `..` nests what follows it), the call of ``__luau_str``."""
    return 1 + _concatenation_depth(pieces)


def _concatenation_depth(pieces: int) -> int:
    if pieces <= _FLAT_PIECES:
        return pieces - 1
    # `(left) .. (right)`: the right half sits under the `..` and its parentheses.
    return 2 + _concatenation_depth(pieces - pieces // 2)


class _Loop:
    """A loop being translated: whether a `continue` in it (not in a nested loop) needs the label."""

    __slots__ = ("has_continue",)

    def __init__(self) -> None:
        self.has_continue = False


class _Closure:
    """An if-then-else expression translated as a closure: whether it must pass on `...`, which
    is known once its branches are translated, and where its opening text goes."""

    __slots__ = ("slot", "uses_varargs")

    def __init__(self) -> None:
        self.slot = -1
        self.uses_varargs = False


class _Translator:
    def __init__(self, text: str) -> None:
        self.data = text.encode()
        self.positions = Positions(text)
        self.out: list[bytes] = []
        # The loops around the node being translated, innermost last; None marks a function
        # boundary (a `continue` never reaches past it).
        self.loops: list[_Loop | None] = []
        # The if-expression closures around the node being translated; None marks a function
        # boundary (a `...` inside a nested function is that function's).
        self.closures: list[_Closure | None] = []

    # Plumbing -----------------------------------------------------------------------------------------

    def render(self, root: tree_sitter.Node) -> str:
        """The translation of ``root``, walking its tree with an explicit stack of items."""
        out = self.out
        start = len(out)
        work: list[Item] = [root]
        while work:
            item = work.pop()
            if type(item) is bytes:
                out.append(item)
            elif isinstance(item, tree_sitter.Node):
                handler = _HANDLERS.get(item.type)
                work.extend(reversed(handler(self, item) if handler else self.children(item)))
            else:
                item()
        text = b"".join(out[start:]).decode()
        del out[start:]
        return text

    def source(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    def node_text(self, node: tree_sitter.Node) -> str:
        return self.source(node.start_byte, node.end_byte)

    def error(self, node: tree_sitter.Node, message: str) -> LuauSyntaxError:
        offset = len(self.data[: node.start_byte].decode())
        return self.positions.error(offset, message)

    def children(self, node: tree_sitter.Node, replace: dict[int, list[Item]] | None = None) -> list[Item]:
        """The items of ``node``: its text, with each child that needs translating as an item of
        its own (or what ``replace`` gives for the child at that index). Leaves that translate to
        themselves (punctuation, keywords, ``nil``) stay in the text around them."""
        children = node.children
        data = self.data
        if not children:
            return [data[node.start_byte : node.end_byte]]
        items: list[Item] = []
        position = node.start_byte
        for index, child in enumerate(children):
            replacement = replace.get(index) if replace else None
            if replacement is None and child.child_count == 0 and child.type not in _HANDLERS:
                continue
            if child.start_byte > position:
                items.append(data[position : child.start_byte])
            if replacement is None:
                items.append(child)
            else:
                items.extend(replacement)
            position = child.end_byte
        if node.end_byte > position:
            items.append(data[position : node.end_byte])
        return items

    # Numbers ------------------------------------------------------------------------------------------

    def number(self, node: tree_sitter.Node) -> list[Item]:
        return [lua_number(self.node_text(node)).encode()]

    def unary_expression(self, node: tree_sitter.Node) -> list[Item]:
        items = self.children(node)
        if node.children[0].type == "#":
            # Luau's # gives a double; multiplying by 1.0 keeps Lua 5.4 from making it an integer.
            return [b"(", *items, b" * 1.0)"]
        return items

    # Strings and concatenation ------------------------------------------------------------------------

    def binary_expression(self, node: tree_sitter.Node) -> list[Item]:
        children = node.children
        operator = operator_index(children)
        if children[operator].type == "%":
            # Luau's a - floor(a / b) * b, not Lua 5.4's fmod (see __luau_mod); `%` becomes the comma.
            # The parentheses keep `return a % b` from being a tail call, which would lose the
            # author's line from an error raised in the helper.
            return [b"(__luau_mod(", *self.children(node, {operator: [b","]}), b"))"]
        if children[operator].type != "..":
            return self.children(node)
        replace: dict[int, list[Item]] = {
            index: [b"__luau_cat(", child, b")"]
            for index, child in enumerate(children)
            if child.is_named and child.type != "comment" and not is_string_valued(child)
        }
        return self.children(node, replace)

    def string(self, node: tree_sitter.Node) -> list[Item]:
        if self.data[node.start_byte : node.start_byte + 1] != b"`":
            return [self.data[node.start_byte : node.end_byte]]
        pieces: list[list[Item]] = []
        literal_start = node.start_byte + 1
        for child in node.children:
            if child.type != "interpolation":
                continue
            literal = _lua_string(self.source(literal_start, child.start_byte))
            if literal != '""':
                pieces.append([literal.encode()])
            braces = {index: [] for index, c in enumerate(child.children) if c.type in ("{", "}")}
            inner = self.children(child, braces)
            expression = child.named_children[0] if child.named_child_count == 1 else None
            is_string = expression is not None and expression.type == "string"
            pieces.append(inner if is_string else [b"__luau_str(", *inner, b")"])
            literal_start = child.end_byte
        literal = _lua_string(self.source(literal_start, node.end_byte - 1))
        if literal != '""' or not pieces:
            pieces.append([literal.encode()])
        if len(pieces) == 1 and type(pieces[0][0]) is bytes and pieces[0][0].startswith(b'"'):
            return pieces[0]
        return [b"(", *_concatenation(pieces), b")"]

    def arguments(self, node: tree_sitter.Node) -> list[Item]:
        first = node.children[0] if node.child_count else None
        if first is not None and first.type == "string" and self.data[first.start_byte] == ord("`"):
            message = "Interpolated strings cannot be used as call arguments without parentheses"
            raise self.error(first, message)
        return self.children(node)

    # Names --------------------------------------------------------------------------------------------

    def identifier(self, node: tree_sitter.Node) -> list[Item]:
        text = self.data[node.start_byte : node.end_byte]
        if text == b"goto":
            # A Lua 5.4 keyword: fine as a field name (see dot_index_expression and field), not as a name.
            message = "'goto' cannot be used as a name here (it is reserved in the Lua 5.4 runtime)"
            raise self.error(node, message)
        return [text]

    def dot_index_expression(self, node: tree_sitter.Node) -> list[Item]:
        name = node.child_by_field_name("field")
        if name is None or self.node_text(name) != "goto":
            return self.children(node)
        replace: dict[int, list[Item]] = {}
        for index, child in enumerate(node.children):
            if child.type == ".":
                replace[index] = []
            elif child == name:
                replace[index] = [b'["goto"]']
        return self.children(node, replace)

    def field(self, node: tree_sitter.Node) -> list[Item]:
        name = node.child_by_field_name("name")
        if name is not None and name.type == "identifier" and self.node_text(name) == "goto":
            index = next(index for index, child in enumerate(node.children) if child == name)
            return self.children(node, {index: [b'["goto"]']})
        return self.children(node)

    def attribute(self, node: tree_sitter.Node) -> list[Item]:
        attribute = self.node_text(node)
        raise self.error(node, f"Unexpected '<' (Luau has no local attributes such as {attribute})")

    # Compound assignment ------------------------------------------------------------------------------

    def update_statement(self, node: tree_sitter.Node) -> list[Item]:
        targets, operator, values = (child for child in node.children if child.type != "comment")
        if targets.named_child_count != 1 or values.named_child_count != 1:
            raise self.error(node, "Compound assignment takes exactly one variable and one value")
        target = targets.named_children[0]
        binary = operator.type[:-1]
        gap = self.source(target.end_byte, operator.start_byte)
        value_gap = self.source(operator.end_byte, values.start_byte)
        if binary == "..":
            string_valued = is_string_valued(values.named_children[0])
            value: list[Item] = [values] if string_valued else [b"__luau_cat(", values, b")"]
        elif binary == "%":
            value = [values]
        else:
            value = [b"(", values, b")"]

        def assign(write: str, read: str) -> list[Item]:
            if binary == "%":
                return [f"{write}{gap}= __luau_mod({read},{value_gap}".encode(), *value, b")"]
            read = f"__luau_cat({read})" if binary == ".." else read
            return [f"{write}{gap}= {read} {binary}{value_gap}".encode(), *value]

        if target.type == "identifier":
            name = self.render(target)
            return assign(name, name)
        table = target.child_by_field_name("table")
        if target.type == "dot_index_expression":
            key_name = self.node_text(target.child_by_field_name("field"))
            key = '["goto"]' if key_name == "goto" else f".{key_name}"
            if table.type == "identifier":
                base = self.render(table)
                return assign(f"{base}{key}", f"{base}{key}")
            temp = self.temporary_name(table, values)
            head: list[Item] = [f"do local {temp} = ".encode(), table, b"; "]
            return [*head, *assign(f"{temp}{key}", f"{temp}{key}"), b" end"]
        if target.type == "bracket_index_expression":
            index = target.child_by_field_name("field")
            if table.type == "identifier" and index.type in _PLAIN_KEYS:
                access = f"{self.render(table)}[{self.render(index)}]"
                return assign(access, access)
            temp = self.temporary_name(table, values)
            head = [f"do local {temp}, __luau_k = ".encode(), table, b", ", index, b"; "]
            return [*head, *assign(f"{temp}[__luau_k]", f"{temp}[__luau_k]"), b" end"]
        raise self.error(target, "Cannot assign to this expression")

    def temporary_name(self, table: tree_sitter.Node, value: tree_sitter.Node) -> str:
        """The local that holds a compound assignment's table while the statement runs.

        Lua names it in "attempt to index a nil value (local '...')", so it takes the table's own
        field name where it can (`a.stats.hits += 1` fails with local 'stats'): that is, unless the
        value mentions the same name, which the local would then hide.
        """
        if table.type == "dot_index_expression":
            name = self.node_text(table.child_by_field_name("field"))
            used = {self.node_text(n) for n in referenced_names(value)}
            if name not in used and name != "goto" and name.isidentifier():
                return name
        return "__luau_t"

    # Loops and continue -------------------------------------------------------------------------------

    def loop(self, node: tree_sitter.Node) -> list[Item]:
        loop = _Loop()
        self.loops.append(loop)
        if node.type == "repeat_statement":
            return [*self.repeat_loop(node), self.loops.pop]
        body = node.child_by_field_name("body")
        children = node.children

        def close() -> None:  # runs once the body is written: has_continue is known
            self.out.append(f"::{CONTINUE_LABEL}:: end".encode() if loop.has_continue else b"end")

        replace: dict[int, list[Item]] = {len(children) - 1: [close]}
        if body is not None:
            body_index = next(index for index, child in enumerate(children) if child == body)
            replace[body_index] = self.block(body, wrap_trailing_return=has_direct_continue(body))
        return [*self.children(node, replace), self.loops.pop]

    def block(self, block: tree_sitter.Node, wrap_trailing_return: bool) -> list[Item]:
        """A loop body; a trailing `return` is wrapped in do...end so that the label may follow it."""
        statements = [(index, child) for index, child in enumerate(block.children) if child.type != "comment"]
        last_index, last = statements[-1] if statements else (-1, None)
        if not wrap_trailing_return or last is None or last.type != "return_statement":
            return [block]
        return self.children(block, {last_index: [b"do ", last, b" end"]})

    def repeat_loop(self, node: tree_sitter.Node) -> list[Item]:
        body = node.child_by_field_name("body")
        if body is None or not has_direct_continue(body):
            return self.children(node)
        statements = [child for child in body.named_children if child.type != "comment"]
        first_jump = next(s for s in statements if has_direct_continue(s))
        skipped = statements[statements.index(first_jump) :]
        condition = node.child_by_field_name("condition")
        declared = {name for statement in skipped for name in declared_names(statement, self.node_text)}
        for name_node in referenced_names(condition):
            name = self.node_text(name_node)
            if name in declared:
                continue_node = first_continue(first_jump)
                line, _ = self.positions.line_col(len(self.data[: continue_node.start_byte].decode()))
                raise self.error(
                    name_node,
                    f"Local {name} used in the repeat..until condition is undefined because continue "
                    f"statement on line {line} jumps over it",
                )
        jump_index = next(index for index, child in enumerate(body.children) if child == first_jump)
        body_items = self.children(body, {jump_index: [b"do ", first_jump]})
        replace: dict[int, list[Item]] = {}
        for index, child in enumerate(node.children):
            if child == body:
                replace[index] = body_items
            elif child.type == "until":
                replace[index] = [f"end ::{CONTINUE_LABEL}:: until".encode()]
        return self.children(node, replace)

    def continue_statement(self, node: tree_sitter.Node) -> list[Item]:
        loop = self.loops[-1] if self.loops else None
        if loop is None:
            raise self.error(node, "continue statement must be inside a loop")
        loop.has_continue = True
        return [f"goto {CONTINUE_LABEL}".encode()]

    def break_statement(self, node: tree_sitter.Node) -> list[Item]:
        if not self.loops or self.loops[-1] is None:
            raise self.error(node, "break statement must be inside a loop")
        return self.children(node)

    def function(self, node: tree_sitter.Node) -> list[Item]:
        self.loops.append(None)
        self.closures.append(None)
        return [*self.children(node), self.leave_function]

    def leave_function(self) -> None:
        self.loops.pop()
        self.closures.pop()

    def vararg_expression(self, node: tree_sitter.Node) -> list[Item]:
        closure = self.closures[-1] if self.closures else None
        if closure is not None:
            closure.uses_varargs = True
        return self.children(node)

    def for_generic_clause(self, node: tree_sitter.Node) -> list[Item]:
        values = len(node.children) - 1
        return self.children(node, {values: [b"__luau_iter(", node.children[values], b")"]})

    # If-then-else expressions -------------------------------------------------------------------------

    def if_expression(self, node: tree_sitter.Node) -> list[Item]:
        clauses = [c for c in node.children if c.type in ("elseif_clause", "else_clause")]
        if not clauses or clauses[-1].type != "else_clause":
            raise self.error(node, "Expected 'else' when parsing if then else expression")
        consequences = [node.child_by_field_name("consequence")]
        consequences += [clause.child_by_field_name("consequence") for clause in clauses]
        if all(c is not None and c.type in _TRUTHY_LITERALS for c in consequences[:-1]):
            # `c1 and a1 or c2 and a2 or e` is exact when no a can be false or nil.
            return [*self.if_as_and_or(node), b")"]
        closure = _Closure()
        self.closures.append(closure)
        return [*self.if_as_closure(node, closure), lambda: self.close_closure(closure)]

    def if_as_and_or(self, node: tree_sitter.Node) -> list[Item]:
        """``node`` (the expression or one of its clauses) as `((c) and (a) or (c2) and (a2) or (e)`."""
        consequence = node.child_by_field_name("consequence")
        replace: dict[int, list[Item]] = {}
        for index, child in enumerate(node.children):
            if child.type == "if":
                replace[index] = [b"(("]
            elif child.type == "then":
                replace[index] = [b") and ("]
            elif child.type in ("elseif", "else"):
                replace[index] = [b" or ("]
            elif child.type in ("elseif_clause", "else_clause"):
                replace[index] = self.if_as_and_or(child)
            elif child == consequence:
                replace[index] = [child, b")"]
        return self.children(node, replace)

    def if_as_closure(self, node: tree_sitter.Node, closure: _Closure) -> list[Item]:
        """``node`` (the expression or one of its clauses) as the body of a closure; the opening
        `(function(...) if` is written once the branches have said whether they use `...`."""
        consequence = node.child_by_field_name("consequence")
        replace: dict[int, list[Item]] = {}
        for index, child in enumerate(node.children):
            if child.type == "if" and node.type == "if_expression":
                replace[index] = [lambda: self.reserve_slot(closure)]
            elif child.type in ("then", "else"):
                replace[index] = [f"{child.type} return (".encode()]
            elif child.type in ("elseif_clause", "else_clause"):
                replace[index] = self.if_as_closure(child, closure)
            elif child == consequence:
                replace[index] = [child, b")"]
        return self.children(node, replace)

    def reserve_slot(self, closure: _Closure) -> None:
        closure.slot = len(self.out)
        self.out.append(b"")

    def close_closure(self, closure: _Closure) -> None:
        params = b"..." if closure.uses_varargs else b""
        self.out[closure.slot] = b"(function(" + params + b") if"
        self.out.append(b" end end)(" + params + b")")
        self.closures.pop()
        # The closure passes `...` on from the code around it, which must then have it too.
        if closure.uses_varargs and self.closures and self.closures[-1] is not None:
            self.closures[-1].uses_varargs = True


_HANDLERS: dict[str, Callable[[_Translator, tree_sitter.Node], list[Item]]] = {
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
    "vararg_expression": _Translator.vararg_expression,
    "for_generic_clause": _Translator.for_generic_clause,
    "if_expression": _Translator.if_expression,
}


def _concatenation(pieces: list[list[Item]]) -> list[Item]:
    """The pieces of an interpolated string joined by `..`, grouped in halves when there are many
    (see ``_concatenation_depth``): strings concatenate the same however they are grouped."""
    if len(pieces) <= _FLAT_PIECES:
        items: list[Item] = [*pieces[0]]
        for piece in pieces[1:]:
            items += [b" .. ", *piece]
        return items
    middle = len(pieces) // 2
    return [b"(", *_concatenation(pieces[:middle]), b") .. (", *_concatenation(pieces[middle:]), b")"]


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
