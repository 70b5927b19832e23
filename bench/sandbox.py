"""Sandbox costs: VM creation, memory per idle guild VM, and the per-event overhead.

Every figure is set beside a baseline measured in the same run on the same machine:

* VM creation against a bare ``lupa.lua54.LuaRuntime()``;
* memory against the bare runtime's heap;
* an event through ``GuildVM.dispatch`` against a bare lupa call of the same handler with the same
  payload (``handler(lua.table_from(payload, recursive=True))``: what any bot embedding lupa pays
  to hand an event to Lua), for a trivial handler and for a handler doing real string work.

The memory rows end with a breakdown of an idle VM's heap (what the runtime, the Luau standard
library's core, the kernel and the script add, each measured after a full collection) and of what
each part loaded on first use adds when a script needs it, then the Python objects each VM keeps.

Run: ``python bench/sandbox.py`` (about 10 s). Prints a table; the targets are in the last column.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable

from lupa import lua54

from lua_runtime.events import sample_payload
from lua_runtime.guild_vm import GuildVM, ScriptSource
from lua_runtime.limits import SandboxLimits
from lua_runtime.sandbox import Sandbox, _bytecode

TRIVIAL = """local discord = require("@warden/discord")
return {
  message = function(msg)
    if string.find(msg.content, "badword", 1, true) then
      discord.delete_message(msg.channel_id, msg.id)
    end
  end,
}"""

HEAVY_BODY = """local words = {}
    for word in string.gmatch(string.lower(msg.content), "%a+") do
      words[#words + 1] = word
    end
    local seen = {}
    for i = 1, 200 do
      local w = words[(i % #words) + 1]
      seen[w] = (seen[w] or 0) + 1
    end
    return seen"""

HEAVY = f"""return {{
  message = function(msg)
    {HEAVY_BODY}
  end,
}}"""


def per_call_us(call: Callable[[], object], seconds: float) -> float:
    """Median of five timed batches, each about seconds/5 long, in microseconds per call."""
    batch = 1
    while True:
        started = time.perf_counter()
        for _ in range(batch):
            call()
        if time.perf_counter() - started > 0.02:
            break
        batch *= 2
    per_batch = max(1, int(batch * (seconds / 5) / 0.02))
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(per_batch):
            call()
        samples.append((time.perf_counter() - started) / per_batch * 1e6)
    return statistics.median(samples)


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


#: What each part loaded on first use adds to a VM, by the top-level code that first needs it.
FIRST_USES = {
    "@warden/discord (require)": 'require("@warden/discord")',
    "@warden/discord builders (the first call of one)": 'require("@warden/discord").log("hello")',
    "string.find of plain text (the kernel's own)": 'string.find("a", "a")',
    "patterns (string.match and friends)": 'string.match("a", "a")',
    "patterns and pattern engine (unbounded in C)": 'string.find("b" .. string.rep("a", 3000), ".-.-.-b")',
    "Luau number formatting (fractions)": "tostring(0.1)",
    "Luau string.format": 'string.format("%d", 1)',
    "names of tables (tostring of a table)": "tostring({})",
    "coroutine library": "coroutine.running()",
    "os library's view": "os.time()",
    "Luau string.split": 'string.split("a,b")',
    "Luau table additions": "table.isfrozen({})",
    "Luau math additions": "math.sign(1)",
    "Luau bit32": "bit32.bnot(0)",
}


def heap_after_collect(lua: lua54.LuaRuntime) -> int:
    """The whole Lua heap of ``lua`` once everything collectable is collected, in bytes."""
    lua.execute("collectgarbage() collectgarbage()")
    return lua.get_memory_used(total=True)


def breakdown(limits: SandboxLimits, script: ScriptSource) -> list[tuple[str, str, str, str, str]]:
    """Rows: where an idle VM's heap goes, and what each part loaded on first use adds."""
    # A runtime made as the sandbox makes one, then the stdlib core in it: the chunk the sandbox runs
    # first, with a fetch that never runs. What the chunk returns is kept, as the kernel keeps it.
    core = lua54.LuaRuntime(max_memory=limits.max_memory, register_eval=False, register_builtins=False)
    core.execute(b"python = nil; package.loaded.python = nil")
    bare = heap_after_collect(core)
    stdlib = core.execute(_bytecode("luau_stdlib"), lambda name: b"", lambda: None)
    sandbox = Sandbox(limits)
    steps = [
        ("LuaRuntime as the sandbox makes it", bare),
        ("Luau stdlib core (stdlib.lua)", heap_after_collect(core)),
        ("kernel, io and package dropped", heap_after_collect(sandbox.lua)),
    ]
    vm = GuildVM(1, [script], limits)
    steps.append((f"script {script.name!r} with @warden/discord", heap_after_collect(vm._sandbox.lua)))
    del stdlib
    rows = []
    previous = 0
    for label, total in steps:
        added = f"+{(total - previous) / 1024:.1f} KiB"
        rows.append((f"  heap: {label}", added, f"{total / 1024:.1f} KiB in all", "", ""))
        previous = total
    # The VM must stay referenced while it is measured: the kernel is held from Python only.
    empty_vm = GuildVM(1, [ScriptSource("empty", "return {}")], limits)
    empty = heap_after_collect(empty_vm._sandbox.lua)
    for label, use in FIRST_USES.items():
        used = GuildVM(1, [ScriptSource("use", f"local _ = {use}\nreturn {{}}")], limits)
        assert not used.load_errors, used.load_errors
        added = heap_after_collect(used._sandbox.lua) - empty
        rows.append((f"  on first use: {label}", f"+{added / 1024:.1f} KiB", "", "", ""))
    tracemalloc.start()
    count = 200
    kept = [GuildVM(guild_id, [script], limits) for guild_id in range(count)]
    gc.collect()
    python_bytes = tracemalloc.get_traced_memory()[0] / count
    tracemalloc.stop()
    del kept
    rows.append(("  Python objects per VM (tracemalloc)", f"{python_bytes / 1024:.1f} KiB", "", "", ""))
    return rows


def bare_handler(source_body: str) -> tuple[Callable[[dict], object], lua54.LuaRuntime]:
    lua = lua54.LuaRuntime(register_eval=False, register_builtins=False)
    handler = lua.eval(f"function(msg) {source_body} end")
    return handler, lua


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000, help="VMs built for the memory figure")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per timing")
    args = parser.parse_args()
    limits = SandboxLimits()
    script = ScriptSource("banned_words", TRIVIAL)
    payload = sample_payload("message")
    payload["content"] = "Hello there, General Kenobi! A perfectly ordinary message."
    rows: list[tuple[str, str, str, str, str]] = []

    # --- creation ---------------------------------------------------------------------------
    bare_create = per_call_us(lambda: lua54.LuaRuntime(max_memory=limits.max_memory), args.seconds)
    vm_create = per_call_us(lambda: GuildVM(1, [script], limits), args.seconds)
    rows.append(
        (
            "VM creation, one script loaded",
            f"{vm_create / 1000:.3f} ms",
            f"{bare_create / 1000:.3f} ms (bare LuaRuntime)",
            f"{vm_create / bare_create:.1f}x",
            "<= 1 ms",
        )
    )

    # --- per-event overhead -----------------------------------------------------------------
    for label, source, body in (
        ("trivial handler", TRIVIAL, 'if string.find(msg.content, "badword", 1, true) then return 1 end'),
        ("string-heavy handler", HEAVY, HEAVY_BODY),
    ):
        gc.collect()
        vm = GuildVM(1, [ScriptSource("bench", source)], limits)
        assert vm.dispatch("message", payload).ok
        sandboxed = per_call_us(lambda vm=vm: vm.dispatch("message", payload), args.seconds)
        handler, lua = bare_handler(body)
        bare_call = per_call_us(
            lambda h=handler, rt=lua: h(rt.table_from(payload, recursive=True)), args.seconds
        )
        rows.append(
            (
                f"event, {label}",
                f"{sandboxed:.2f} us",
                f"{bare_call:.2f} us (bare lupa call)",
                f"{sandboxed / bare_call:.2f}x",
                "<= 2x" if label == "trivial handler" else "",
            )
        )

    # --- memory -----------------------------------------------------------------------------
    gc.collect()
    before = rss_bytes()
    vms = [GuildVM(guild_id, [script], limits) for guild_id in range(args.vms)]
    gc.collect()
    rss_per_vm = (rss_bytes() - before) / len(vms)
    vm = vms[-1]
    vm._sandbox.collect_garbage()
    heap_own = vm.memory_used()
    heap_total = vm._sandbox.lua.get_memory_used(total=True)
    bare = lua54.LuaRuntime(max_memory=limits.max_memory)
    bare.execute("collectgarbage()")
    bare_total = bare.get_memory_used(total=True)
    rows.append(
        (
            "memory per idle VM (lupa's count, runtime base excluded)",
            f"{heap_own / 1024:.1f} KiB",
            "0 KiB",
            "",
            "<= 64 KiB",
        )
    )
    rows.append(
        (
            "memory per idle VM (whole Lua heap)",
            f"{heap_total / 1024:.1f} KiB",
            f"{bare_total / 1024:.1f} KiB (bare LuaRuntime)",
            f"{heap_total / bare_total:.1f}x",
            "",
        )
    )
    rows.append((f"RSS per idle VM ({args.vms} VMs)", f"{rss_per_vm / 1024:.1f} KiB", "", "", ""))
    del vms
    rows.extend(breakdown(limits, script))

    header = ("measure", "Warden", "baseline, same run", "ratio", "target")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
