"""Child process for the hostile-source tests: translates each source under a CPU allowance.

A translation that is not linear (a regex that backtracks, text rebuilt per link of a chain,
tree-sitter recovering from a long run of errors) takes seconds to days on a 64 KiB source. Run
here, such a regression fails its test instead of hanging pytest: before each source the child
lowers its ``RLIMIT_CPU`` to what it has used plus the allowance, so the kernel stops it
(SIGXCPU) once one translation has spent more than that. CPU time, unlike wall time, does not
stretch on a busy machine.

The plan comes as JSON on stdin: ``{"cpu_seconds": 2.0, "sources": [["name", "source"], ...]}``.
The child prints ``{"start": name}`` before each source and a record after it, flushed at once (so
that the parent sees which source was running when the child died), then ``{"done": true}``.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from typing import Any

from lua_runtime.luau import LuauSyntaxError
from lua_runtime.luau.erasure import erase_types
from lua_runtime.luau.lexer import tokenize
from lua_runtime.luau.parser import parse
from lua_runtime.luau.translator import translate_tree


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def translate(name: str, source: str) -> dict[str, Any]:
    """Translates without the cache; the record of how it ended."""
    try:
        tokens = tokenize(source)
        text, code_tokens = erase_types(source, tokens)
        translate_tree(text, parse(text, code_tokens))
    except LuauSyntaxError as error:
        return {"name": name, "outcome": "syntax", "line": error.line, "message": error.message}
    except BaseException as error:  # the parent asserts on it: only syntax errors may come out
        return {"name": name, "outcome": "exception", "message": f"{type(error).__name__}: {error}"}
    return {"name": name, "outcome": "ok"}


def main() -> None:
    plan = json.load(sys.stdin)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    for name, source in plan["sources"]:
        # Only the soft limit moves (it may go up and down; the hard one could only go down).
        soft = math.ceil(time.process_time() + plan["cpu_seconds"])
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        emit({"start": name})
        emit(translate(name, source))
    emit({"done": True})


if __name__ == "__main__":
    main()
