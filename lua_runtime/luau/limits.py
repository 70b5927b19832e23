"""The bounds of the Luau layer, in one place: what a script may nest, how long the parser may work,
how much the translation cache may hold.

Every stage of the translation is linear in the size of the source; these bounds are what keeps
the few things that are not (tree-sitter's error recovery) and the things that are legitimately big
(the Python stack, the Lua 5.4 parser's stack, the cache) from turning a hostile upload into a
frozen or crashed bot.
"""

from __future__ import annotations

#: Deepest nesting a script may use, counted as Lua 5.4's own parser counts it (one level per
#: statement inside a block, per expression inside another: parentheses, call arguments, table
#: fields, function bodies; per unary operator; per operand of a right-associative chain such as
#: ``a .. b .. c``), plus the levels the translation adds (an if-then-else expression becomes a
#: closure). Lua 5.4 refuses a chunk deeper than LUAI_MAXCCALLS = 200 levels with "C stack
#: overflow"; the margin leaves room for the levels the sandbox's own ``load`` call holds, so that
#: whatever the translator accepts, Lua compiles. Luau's own parser stops at 1000
#: (LuauRecursionLimit), so Warden is stricter; docs/luau.md says so.
MAX_NESTING = 190

#: Deepest nesting of a type annotation. Types are erased before Lua sees them, so only the Python
#: stack bounds them: the eraser recurses about three frames per level, well inside Python's 1000.
MAX_TYPE_NESTING = 200

#: CPU seconds tree-sitter may spend on one parse before it is stopped with "too complex to parse".
#: tree-sitter only ever parses code Warden's syntax check accepts (see ``parser.py``), which it
#: does in linear time: a 64 KiB script in about 30 ms. This is the backstop for a disagreement
#: between the check and tree-sitter's grammar, since tree-sitter's error recovery is quadratic on
#: long runs of errors (65,000 commas take 14 s).
PARSE_CPU_SECONDS = 1.0

#: Memory the translation cache may hold (sources and their translations, as Python measures the
#: strings). A translation is at most about 6 times its source, so this keeps at least 80
#: translations of 64 KiB scripts, and thousands of typical ones (a few KiB each).
CACHE_BYTES = 32 * 1024 * 1024
