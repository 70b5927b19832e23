"""The lexer examines each character a bounded number of times, whatever the source.

``Lexer.steps`` counts the characters the scanner examined. A scanner that backtracks (a regex
whose alternatives can split the same text in many ways, as `"(?:\\z\\s*|\\[\\s\\S])*"` did on an
unfinished string: 2^n ways for n escapes) or rescans (searching again from the start of a token)
breaks the bound below on the sources Hypothesis makes: random text and bytes, random mixes of Luau
token fragments, and runs of escapes, quotes and brackets. The bound is counted, not timed.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lua_runtime.luau import LuauSyntaxError
from lua_runtime.luau.lexer import EOF, Lexer

#: Steps per character a linear scanner may take: a one-digit number between one-character
#: operators takes the most (about 3).
STEPS_PER_CHAR = 4
STEPS_FIXED = 8

FRAGMENTS = [
    *('"', "'", "`", "\\", "\\z", "\\z \t", "\\\n", "\\\r\n", "\\x4", "\\u{41}", "\\123", "\\{", "\\`"),
    *("[[", "]]", "[=[", "]=]", "[==[", "]==]", "[=", "--", "--[[", "--[=[", "\n", "\r", " ", "\t"),
    *("{", "}", "{{", "`a{", "}b`", "}c{", "(", ")", "[", "]", ",", ";", ":", "::", ".", "..", "..."),
    *("0x", "0b", "1", "1e", "1e+", "e", "E", "_", "9.5", ".5", "f", "p", "+", "-", "=", "==", "~="),
    *("local", "function", "end", "a", "if", "then", "#", "%", "^", "//", "<", ">", "&", "|", "~"),
]

sources = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda data: data.decode("latin-1")),
    st.binary(max_size=200).map(lambda data: data.decode("utf-8", "replace")),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join),
    st.lists(
        st.sampled_from(["\\", "z", "\\z", " ", "\n", '"', "'", "`", "{", "}", "\r\n"]), max_size=80
    ).map("".join),
    st.tuples(
        st.sampled_from(['"', "'", "`", "[==[", "--[=["]), st.lists(st.sampled_from(FRAGMENTS), max_size=80)
    ).map(lambda parts: parts[0] + "".join(parts[1])),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sources)
def test_the_lexer_examines_each_character_a_bounded_number_of_times(source: str) -> None:
    lexer = Lexer(source)
    try:
        tokens = lexer.tokenize()
    except LuauSyntaxError as error:
        assert error.line >= 1
    else:
        # Tokens come in order, do not overlap, and are the text they cover.
        assert tokens[-1].kind == EOF
        previous_end = 0
        for token in tokens[:-1]:
            assert previous_end <= token.start < token.end
            assert source[token.start : token.end] == token.text
            previous_end = token.end
    assert lexer.steps <= STEPS_PER_CHAR * len(source) + STEPS_FIXED


def test_the_steps_stay_linear_on_the_worst_runs_we_know() -> None:
    # Each unit repeated 10,000 times; the old regexes took exponential or quadratic time on these.
    for head, unit, tail in [
        ('local s = "', "\\z", ""),
        ("local s = '", "\\z\\\n", ""),
        ("local s = `", "\\z {", ""),
        ("local s = [==[", "]=]", ""),
        ("--[=[", "]==]=", ""),
        ("local x = 1e", "1", "q"),
        ("local x = 0x", "f", "g"),
        ("local x = ", "1,", ""),
    ]:
        source = head + unit * 10_000 + tail
        lexer = Lexer(source)
        with contextlib.suppress(LuauSyntaxError):
            lexer.tokenize()
        assert lexer.steps <= STEPS_PER_CHAR * len(source) + STEPS_FIXED, head
