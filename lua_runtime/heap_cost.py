"""What plain Python data costs a Lua 5.4 heap once lupa has copied it in: an upper bound, in bytes.

The host pushes data into a guild VM while its guest runs (``@warden/kv`` answers, host modules)
and before each call (the event's payload). A push that meets a full heap is an unprotected Lua
error, which aborts the process or leaves the worker waiting forever for the GIL it holds, so the
sandbox checks that a push fits *before* making it: see ``Sandbox.lift_for``. This module gives the
estimate that check needs, from the Python value alone.

The figures are Lua 5.4's on a 64-bit machine, rounded up: a string is a 24-byte header plus its
bytes and a terminator; a table is a 56-byte header plus, for each entry, a 16-byte array slot or a
24-byte hash node, and Lua sizes both parts in powers of two, so up to twice the entries. Numbers,
booleans and nil live inside their slot. Short strings are interned and may cost nothing, which an
upper bound ignores. ``tests/sandbox/test_host_memory.py`` checks the bound against lupa.
"""

from __future__ import annotations

from typing import Any

#: A string's header and terminator, rounded up.
STRING_COST = 32
#: A table's header, rounded up.
TABLE_COST = 64
#: One entry of a table: a hash node (24 bytes) or array slot (16), twice over for the rounding up
#: to a power of two.
ENTRY_COST = 48


def text_cost(text: str | bytes) -> int:
    """The heap bytes of the Lua string lupa makes of ``text`` (UTF-8 encoded)."""
    if type(text) is str and not text.isascii():
        return STRING_COST + len(text.encode())
    return STRING_COST + len(text)


def lua_cost(value: Any) -> int:
    """An upper bound of the heap bytes ``value`` takes once pushed into a Lua VM.

    ``value`` is plain data (None, booleans, numbers, strings, bytes, lists and string-keyed
    dicts of them, as JSON decodes it or as an event payload holds it); nesting is the caller's
    to bound (the KV store and the payload check do).
    """
    kind = type(value)
    if kind is str or kind is bytes:
        return text_cost(value)
    if kind is dict:
        cost = TABLE_COST + ENTRY_COST * len(value)
        for key, item in value.items():
            cost += lua_cost(key) + lua_cost(item)
        return cost
    if kind is list or kind is tuple:
        cost = TABLE_COST + ENTRY_COST * len(value)
        for item in value:
            cost += lua_cost(item)
        return cost
    return 0
