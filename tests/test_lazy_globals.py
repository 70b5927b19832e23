"""The guest globals a guild VM builds on a script's first read: ``coroutine`` and ``os``.

An idle VM carries neither: coroutines.lua is compiled into it, and the read-only view of ``os`` is
made, when one of its scripts first reads the global (issue #4: an idle VM within 64 KiB). These
tests check that they are built then and only once, that they behave as before (read-only, hooked
coroutines, the kernel's threads out of reach), and that a first read into a full heap is the
script's memory error, not an abort.
"""

from __future__ import annotations

import pytest

from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import SandboxLimits
from tests.sandbox.attack import Case, assert_stopped, run_attacks


def top_level(*sources: str) -> list[str]:
    """What the scripts print at their top level in one fresh guild VM (they return no handlers)."""
    vm = GuildVM(
        1, [ScriptSource(f"s{i}", s + "\nreturn {}") for i, s in enumerate(sources)], SandboxLimits()
    )
    assert vm.load_errors == []
    return [line.text for line in vm.load_output]


def test_a_vm_whose_scripts_read_neither_global_builds_neither(fetched: list[str]) -> None:
    assert top_level("print(string.upper('a'), type(print))") == ["A\tfunction"]
    assert "coroutines" not in fetched


def test_coroutine_is_compiled_once_for_all_the_guilds_scripts(fetched: list[str]) -> None:
    output = top_level(
        "print(coroutine == coroutine, type(coroutine.wrap))",
        "local gen = coroutine.wrap(function() coroutine.yield(1) coroutine.yield(2) end)\nprint(gen(), gen())",
    )
    assert output == ["true\tfunction", "1\t2"]
    assert fetched.count("coroutines") == 1


@pytest.mark.parametrize("name", ["coroutine", "os"])
def test_a_global_built_on_first_read_is_a_read_only_view(name: str) -> None:
    source = (
        f"local write = pcall(function() {name}.extra = print end)\n"
        f"local raw = pcall(rawset, {name}, 'extra', print)\n"
        f"local names = 0 for _ in pairs({name}) do names = names + 1 end\n"
        f"print(write, raw, next({name}), getmetatable({name}), #{name}, names, {name}.extra)"
    )
    names = {"coroutine": 8, "os": 4}[name]
    assert top_level(source) == [f"false\tfalse\tnil\tfalse\t0\t{names}\tnil"]


def test_the_library_views_have_no_length() -> None:
    # The views carry no __len: their stores have no 1, so Lua's length is 0 as Luau's is.
    assert top_level("print(#string, #table, #math, #utf8, #bit32, #os, #coroutine)") == [
        "0\t0\t0\t0\t0\t0\t0"
    ]


def test_the_lazy_coroutine_library_keeps_the_kernels_threads_out_of_reach() -> None:
    source = """
return { message = function()
  local me = coroutine.running()
  print(coroutine.resume(me))
  print(pcall(coroutine.close, me))
end }"""
    vm = GuildVM(1, [ScriptSource("s", source)], SandboxLimits())
    result = vm.dispatch("message", {"content": "x"})
    assert result.errors == []
    assert [line.text for line in result.output] == [
        "false\tcannot resume a coroutine that Warden runs (a handler's or a task's)",
        "false\tcannot close a running coroutine",
    ]


def test_a_coroutine_that_spends_the_budget_unwinds_its_resumer() -> None:
    # Through coroutines.lua: a resume or a wrapped call whose coroutine spent the CPU budget ends
    # the script's turn; the script does not go on after it.
    for call in ("coroutine.resume(co)", "coroutine.wrap(spin)()"):
        source = (
            "local function spin() while true do end end\n"
            "return { message = function()\n"
            "  local co = coroutine.create(spin)\n"
            f"  {call}\n"
            "  print('went on')\n"
            "end }"
        )
        vm = GuildVM(1, [ScriptSource("s", source)], SandboxLimits(cpu_ms_per_event=20))
        result = vm.dispatch("message", {"content": "x"})
        [error] = result.errors
        assert error.kind == "time_limit", call
        assert result.output == [], call


# The heap is filled from a coroutine (whose resume hands the memory error back as a value, so the
# handler goes on with a full heap); then `os` is read for the first time in the VM.
FULL_HEAP_OS = Case(
    "keep = {}\n"
    "return { message = function()\n"
    "  coroutine.resume(coroutine.create(function() while true do keep[#keep + 1] = {} end end))\n"
    "  return os.time() > 0\n"
    "end }",
    events=2,
)


def test_a_first_read_of_os_into_a_full_heap_is_at_worst_the_memory_limit() -> None:
    # The view is two small tables: the heap may still have room for them. Either way the process
    # lives and the VM serves the witness.
    result = run_attacks({"os": FULL_HEAP_OS})["os"]
    result.check_witness()
    for event in result.events:
        error = event.error_of("attack")
        if error is not None:
            assert_stopped(error, "memory_limit")
