"""Weak tables for the host only: in a guest's metatable, ``__mode`` is an ordinary field.

Lua's collector settles the tables whose keys are weak and values strong (ephemerons) in its
atomic step, by going over all of them again each time one of them marked a value
(``convergeephemerons`` in lgc.c). A chain of entries, each value the key of the next, makes that
quadratic in the entries: with a 16 MiB heap a script keeps 150,000 of them, and from then on one
allocation runs the collector for tens of seconds, inside a single Lua instruction, out of reach of
the budget hook and of preemption (``tests/sandbox/test_variants.py`` has such chains). Refusing
such metatables in ``setmetatable`` does not hold: the collector reads ``__mode`` from the
metatable at every cycle, and the metatable is the script's own table, which it can change at any
time (``mt.__mode = "k"`` after the check).

So scripts get no weak tables at all. The collector finds a table's mode by looking up the string
``"__mode"`` in its metatable, by identity: Lua interns short strings, so every ``"__mode"`` a
script writes is the very string object the collector looks up (``G(L)->tmname[TM_MODE]``). Once
the host's own weak tables exist (the kernel's thread registries, the index of frozen tables,
``debug.sethook``'s table of hooks), :func:`hide` changes the length recorded in that string object
to one no short string has (``LUAI_MAXSHORTLEN + 1``): the string table never finds it again, so
the next ``"__mode"`` a script (or a host module loaded later) makes is a new string object, which
the collector's lookup never matches. The host's tables keep the original as their key, and stay
weak. The bytes and the hash of the string stay as they were, and nothing reads its length: it is
fixed (never collected), never compared by content, never shown, and never reaches a script. (Only
``lua_close`` does, to tell the allocator what it frees: lupa's count of the closed runtime's
memory then ends 35 bytes low, which nothing reads.)

Scripts see weak tables that hold their keys and values strongly (docs/luau.md). Scripts cannot run
a collection (``collectgarbage`` only counts), so no script could count on when weak entries go.

The layout of a short string (``TString`` in lobject.h, Lua 5.4 on a 64-bit machine): the GC header
(``next``, ``tt``, ``marked``), ``extra``, ``shrlen`` at byte 11, ``hash``, ``u.hnext``, then its
bytes at byte 24. It is checked once per process on a scratch runtime, with a functional test of
the whole scheme, and the bytes at the address are checked again before every change. When
anything does not match, scripts keep Lua's weak tables, and the log says why.
"""

from __future__ import annotations

import ctypes
import logging
import threading

from lupa import lua54

log = logging.getLogger(__name__)

#: Where the fields of a short string are, and what they hold for ``"__mode"``.
_TAG_AT, _LENGTH_AT, _BYTES_AT = 8, 11, 24
_SHORT_STRING_TAG = 4  # LUA_VSHRSTR
_MODE = b"__mode"

#: A length no short string has (LUAI_MAXSHORTLEN is 40): the string table compares lengths before
#: bytes, and longer strings are never looked up in it.
UNFINDABLE_LENGTH = 41

#: Run before :func:`hide` in a new runtime (whose ``debug`` library is still there), with Lua's own
#: string.format (the sandbox's string library has Luau's, whose "%p" shows no address): makes the
#: weak table of hooks that ``debug.sethook`` creates on its first call, so that its mode is keyed
#: by the original string; returns the address of that string.
PREPARE = b"""
debug.sethook(coroutine.create(print), print, "", 1 << 30)
return (...)("%p", "__mode")
"""

_lock = threading.Lock()
_available: bool | None = None


def _is_mode_string(address: int) -> bool:
    raw = ctypes.string_at(address, _BYTES_AT + len(_MODE) + 1)
    return (
        raw[_TAG_AT] == _SHORT_STRING_TAG
        and raw[_LENGTH_AT] == len(_MODE)
        and raw[_BYTES_AT:] == _MODE + b"\0"
    )


def _poke(address: int) -> None:
    ctypes.c_ubyte.from_address(address + _LENGTH_AT).value = UNFINDABLE_LENGTH


def _probe() -> bool:
    """Whether the scheme works with this lupa: on a scratch runtime, a weak table made before the
    change stays weak, and one whose mode is written after it is not."""
    lua = lua54.LuaRuntime(register_eval=False, register_builtins=False)
    address = int(lua.execute(PREPARE, lua.eval("string.format")), 16)
    if not _is_mode_string(address):
        return _off("a Lua string is not laid out where Lua 5.4 keeps its fields")
    check = lua.execute(
        b"""
        local host = setmetatable({}, { __mode = "k" })
        return function()
          -- Made now, as a script makes it: "__mo" .. "de" is built at run time.
          local script = setmetatable({}, { ["__mo" .. "de"] = "k" })
          host[{}], script[{}] = true, true
          collectgarbage() collectgarbage()
          return next(host) == nil and next(script) ~= nil
        end
        """
    )
    _poke(address)
    if check() is not True:
        return _off("after the change, weak tables did not behave as the host needs")
    return True


def _off(reason: str) -> bool:
    log.warning(
        "scripts keep Lua's weak tables: %s. A script can then build weak-keyed chains whose "
        "garbage collection stalls its worker for seconds",
        reason,
    )
    return False


def available() -> bool:
    """Whether scripts' weak tables can be made inert in this process (probed once)."""
    global _available
    if _available is None:
        with _lock:
            if _available is None:
                _available = _probe()
    return _available


def hide(address: str) -> bool:
    """Make the ``"__mode"`` string at ``address`` (what :data:`PREPARE` returned, in a runtime
    that no script has run in yet) unfindable, so that scripts' weak modes are inert in that
    runtime. False when that cannot be done here."""
    if not available():
        return False
    at = int(address, 16)
    if not _is_mode_string(at):
        log.warning("a runtime's __mode string is not where it should be; its scripts keep weak tables")
        return False
    _poke(at)
    return True
