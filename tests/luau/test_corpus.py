"""The corpus: Luau programs whose expected output was printed by real Luau 0.686.

Each ``corpus/NAME.luau`` runs translated, in a fresh VM with the Luau standard library; what it
prints must equal ``corpus/NAME.out`` line for line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.luau.harness import LuauVM

CORPUS = Path(__file__).with_name("corpus")
PROGRAMS = sorted(CORPUS.glob("*.luau"))


def test_corpus_is_not_empty() -> None:
    assert len(PROGRAMS) >= 10


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_prints_what_real_luau_prints(program: Path) -> None:
    expected = program.with_suffix(".out").read_text()
    run = LuauVM().run(program.read_text())
    assert run.error is None
    # Compared as text: a printed value may hold a newline (string.format("%q", "a\nb")).
    assert "".join(line + "\n" for line in run.output) == expected
