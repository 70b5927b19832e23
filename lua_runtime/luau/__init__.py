"""The Luau layer: Luau source to Lua 5.4 source, and Luau's standard library for Lua 5.4.

Scripts are written in Luau and run on Lua 5.4 (``lupa.lua54``). :func:`translate` turns a script
into Lua 5.4 source with every statement on its original line; ``stdlib.lua`` (at
:data:`STDLIB_PATH`) is the chunk the sandbox runs in each VM to add Luau's library and the helpers
translated code calls, and it loads the rest of the library in groups (``numbers.lua``,
``strings.lua``, ``tables.lua``, ``maths.lua``, ``bit32.lua``), each on first use: see
:func:`library_chunk`. This package never imports discord.py.

The pipeline, one module per job: ``lexer`` (tokens), ``erasure`` (type annotations blanked),
``syntax`` (the syntax check, which also bounds nesting), ``parser`` (tree-sitter, syntax
diagnostics), ``translator`` and ``tree`` (the tree to Lua 5.4); ``limits`` holds their bounds.
Every stage is linear in the size of the source. Translations are cached (``cache``), keyed on
the source and bounded by bytes.
"""

from __future__ import annotations

from pathlib import Path

from lua_runtime.luau.cache import CacheInfo, TranslationCache
from lua_runtime.luau.erasure import erase_types
from lua_runtime.luau.errors import LuauSyntaxError
from lua_runtime.luau.lexer import tokenize
from lua_runtime.luau.limits import CACHE_BYTES
from lua_runtime.luau.parser import parse
from lua_runtime.luau.translator import translate_tree

__all__ = [
    "LIBRARY_PREFIX",
    "STDLIB_PATH",
    "CacheInfo",
    "LuauSyntaxError",
    "TranslationCache",
    "cached_translation",
    "group_source",
    "library_chunk",
    "remember_translation",
    "translate",
    "translation_cache",
]

#: The Lua 5.4 chunk that adds Luau's standard library to a VM (see its header for the contract).
STDLIB_PATH: Path = Path(__file__).with_name("stdlib.lua")

#: Chunk names of the Luau library start with this; the rest is the file's stem in this folder.
LIBRARY_PREFIX = "luau_"


def library_chunk(name: str) -> Path:
    """The file of Luau library chunk ``name``: ``luau_stdlib`` or a group such as ``luau_numbers``."""
    if not name.startswith(LIBRARY_PREFIX):
        raise ValueError(f"{name!r} is not a Luau library chunk")
    path = STDLIB_PATH.with_name(name.removeprefix(LIBRARY_PREFIX) + ".lua")
    if not path.is_file():
        raise ValueError(f"no Luau library chunk named {name!r}")
    return path


def group_source(name: str) -> bytes:
    """The source of library group ``name``, for a runtime that runs stdlib.lua on its own (a test
    harness): the sandbox hands groups over as bytecode instead (see ``lua_runtime/sandbox.py``)."""
    return library_chunk(name).read_bytes()


#: Every translation this process made or was handed, within CACHE_BYTES (see limits.py).
translation_cache = TranslationCache(CACHE_BYTES)


def translate(source: str) -> str:
    """Luau ``source`` as Lua 5.4 source: same number of lines, every statement on its own line.

    Raises :class:`LuauSyntaxError` (line and column in ``source``) for code that is not Luau, or
    that uses Lua 5.4 syntax Luau does not have (``goto``, ``<close>``, bitwise operators), or that
    nests deeper than Lua 5.4 can compile. Time and memory are linear in the size of ``source``.
    Translations are cached, so the same source is parsed once.
    """
    lua = translation_cache.get(source)
    if lua is None:
        tokens = tokenize(source)
        text, code_tokens = erase_types(source, tokens)
        tree = parse(text, code_tokens)
        lua = translate_tree(text, tree)
        translation_cache.put(source, lua)
    return lua


def remember_translation(source: str, lua: str) -> None:
    """Seeds the cache with ``lua``, the translation of ``source`` that ``translate`` made in another
    process (a worker that translated an upload where a stall could be killed): the next
    ``translate(source)`` here returns it without parsing."""
    translation_cache.put(source, lua)


def cached_translation(source: str) -> str | None:
    """The cached translation of ``source``, or None: never translates (for a caller that must
    translate elsewhere, such as the thread strategies' translation process)."""
    return translation_cache.get(source)
