"""Translation cost of the worst Luau sources we can construct, against a typical script of the same size.

Every case is a source of up to 64 KiB (the script size limit) built to hit one class of cost:
the lexer (unfinished strings full of escapes, long-bracket near misses, numerals with a bad
suffix), the translator (long chains of operators, of calls, of statements; many interpolations;
nesting at the limit), tree-sitter's error recovery (long runs of the same error), the type eraser
(long unions, deep types) and the nesting bound. The baseline, measured in the same run, is a
64 KiB script made of the realistic moderation code of ``data/examples``, repeated.

Each row gives the source's size, how translation ended (``ok`` or the syntax error's line), the
time of one translation (the best of a few, without the cache), that time against the baseline's
time for the same number of bytes (``x typical``: 1.0 means as costly per byte as real code), and
the lexer's steps per character (its count of characters examined; a linear scanner stays near 2).
The worst row is repeated at the end.

Run: ``python bench/translate.py`` (about 20 s) or ``--quick`` (one timing per case, about 5 s).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from lua_runtime.luau import LuauSyntaxError
from lua_runtime.luau.erasure import erase_types
from lua_runtime.luau.lexer import Lexer
from lua_runtime.luau.parser import parse
from lua_runtime.luau.translator import translate_tree

LIMIT = 64 * 1024
EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"


def fill(unit: str, head: str = "", tail: str = "") -> str:
    """``head``, then ``unit`` repeated as often as fits in LIMIT bytes with ``tail``, then ``tail``."""
    room = LIMIT - len(head.encode()) - len(tail.encode())
    return head + unit * (room // len(unit.encode())) + tail


def typical() -> str:
    """Realistic code: the example scripts, each in a function of its own, repeated to 64 KiB."""
    parts = []
    for index, path in enumerate(sorted(EXAMPLES.glob("*.luau"))):
        parts.append(f"local function example{index}()\n{path.read_text()}\nend\n")
    return fill("do\n" + "".join(parts) + "end\n")


def nested(opening: str, middle: str, closing: str, depth: int) -> str:
    """``depth`` levels of opening ... closing around ``middle``, repeated to fill LIMIT."""
    return fill(opening * depth + middle + closing * depth + "\n", "local x\n")


CASES: dict[str, Callable[[], str]] = {
    # The lexer
    "unfinished string of \\z escapes": lambda: fill("\\z", 'local s = "'),
    "unfinished string of \\ line breaks": lambda: fill("\\\n", 'local s = "'),
    "long bracket level 40, near-miss closers": lambda: fill(
        "]" + "=" * 39 + "]", "local s = [" + "=" * 40 + "["
    ),
    "unfinished long comment": lambda: fill("]=]", "--[==["),
    "65k digits, bad suffix": lambda: fill("1", "local x = ", "q"),
    "65k-digit exponent, bad suffix": lambda: fill("1", "local x = 1e", "q"),
    "65k hex digits, bad suffix": lambda: fill("f", "local x = 0x", "g"),
    "65k-digit number (valid)": lambda: fill("1", "local x = "),
    "unfinished interpolation of \\{ escapes": lambda: fill("\\{", "local s = `"),
    "64 KiB identifier": lambda: fill("a", "local ", " = 1"),
    "64 KiB comment": lambda: fill("x", "-- "),
    # The translator and tree-sitter on valid code
    "a + a + ... chain": lambda: fill(" + a", "local a = 1\nlocal x = a"),
    "a or a or ... chain": lambda: fill(" or a", "local a = 1\nlocal x = a"),
    "a.b.c... chain": lambda: fill(".b", "local x = a"),
    "a:b():b()... chain": lambda: fill(":b()", "local x = a"),
    "f(a, a, ...) one call": lambda: fill("a, ", "f(", "a)"),
    "{1, 1, ...} one table": lambda: fill("1, ", "local t = {", "1}"),
    "one string, 10k interpolations": lambda: fill("{a}", "local s = `", "`"),
    "if-expressions in a row": lambda: fill("local x = if a then b else c\n"),
    "compound assignments": lambda: fill("t.a[k] += 1\n", "local t, k = {a = {}}, 1\n"),
    "continue in loops": lambda: fill("for i = 1, 2 do if i then continue end end\n"),
    "statements on one line": lambda: fill("x = 1 "),
    "parentheses 180 deep, repeated": lambda: nested("(", "1", ")", 180),
    "tables 180 deep, repeated": lambda: nested("{", "", "}", 180),
    "if-expressions 37 deep, repeated": lambda: nested("if a then f() else ", "1", "", 37),
    # Nesting past the bound
    "parentheses 32k deep": lambda: fill("(", "local x = "),
    "unary minus 64k deep": lambda: fill("- ", "local x = "),
    "functions 8k deep": lambda: fill("function() return ", "local x = "),
    "a .. a .. ... chain": lambda: fill(" .. a", "local x = a"),
    "a % b % ... chain": lambda: fill(" % a", "local x = a"),
    # tree-sitter's error recovery, had it seen these
    "65k commas": lambda: fill(",", "local x = "),
    "x x x ...": lambda: fill(" x", "local y = x"),
    "then then ...": lambda: fill("then ", "if a "),
    "function function ...": lambda: fill("function "),
    "... ... ...": lambda: fill("... ", "local x = "),
    "f(, f(, ...": lambda: fill("f(,"),
    "= = = ...": lambda: fill("= "),
    "local then = 1 (keywords as names)": lambda: fill("local then = 1\n"),
    # The type eraser
    "type x: ... (3000 times) number": lambda: "local x: " + "..." * 3000 + "number = 1",
    "union of 16k types": lambda: fill(" | a", "type T = a"),
    "generic with 16k arguments": lambda: fill("a, ", "type T = G<", "a>"),
    "table type 32k deep": lambda: fill("{", "type T = "),
    "function type chain": lambda: fill("() -> ", "type T = ", "()"),
    "annotated locals": lambda: fill("local x: { [string]: number? } = {}\n"),
}


def translate_once(source: str) -> tuple[str, int]:
    """Translates ``source`` without the cache: how it ended, and the lexer's steps."""
    lexer = Lexer(source)
    try:
        tokens = lexer.tokenize()
        text, code_tokens = erase_types(source, tokens)
        translate_tree(text, parse(text, code_tokens))
    except LuauSyntaxError as error:
        return f"syntax, line {error.line}", lexer.steps
    return "ok", lexer.steps


def best_time(source: str, runs: int) -> tuple[float, str, int]:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        outcome, steps = translate_once(source)
        best = min(best, time.perf_counter() - started)
    return best, outcome, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timing per case")
    args = parser.parse_args()
    runs = 1 if args.quick else 3

    baseline_source = typical()
    baseline, outcome, steps = best_time(baseline_source, runs + 2)
    assert outcome == "ok", outcome
    per_byte = baseline / len(baseline_source.encode())
    header = ("case", "bytes", "result", "time", "x typical", "lexer steps/char")
    rows = [
        (
            "typical: data/examples repeated (baseline)",
            str(len(baseline_source.encode())),
            outcome,
            f"{baseline * 1000:.1f} ms",
            "1.0",
            f"{steps / len(baseline_source):.2f}",
        )
    ]
    worst: tuple[float, str] = (0.0, "")
    for name, build in CASES.items():
        source = build()
        size = len(source.encode())
        seconds, outcome, steps = best_time(source, runs)
        rows.append(
            (
                name,
                str(size),
                outcome,
                f"{seconds * 1000:.1f} ms",
                f"{seconds / (per_byte * size):.1f}",
                f"{steps / len(source):.2f}",
            )
        )
        worst = max(worst, (seconds, name))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"\nworst case: {worst[1]}, {worst[0] * 1000:.1f} ms (typical 64 KiB: {baseline * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
