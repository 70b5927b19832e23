"""Child process for the durability tests: writes in a loop and prints ``ack N`` after each write returns.

The parent reads some acknowledgements, kills this process with SIGKILL at once, reopens the database
and checks that every acknowledged write is there. Run as
``python -m tests.support.durability_child DATABASE kv|scripts``.

The ``scripts`` mode opens the database itself (creating the schema); the ``kv`` mode expects the
parent to have created it, as the Lua workers do.
"""

from __future__ import annotations

import asyncio
import sys

from bot.storage import Storage
from lua_runtime.kv_store import KVStore
from lua_runtime.limits import SandboxLimits

GUILD_ID = 100
COUNTER_KEY = "counter"
SCRIPT_NAME = "durable"
# Far more writes than any test waits for; bounds the child if its parent never kills it.
MAX_WRITES = 5000


def write_kv(path: str) -> None:
    with KVStore(path, SandboxLimits()) as store:
        for _ in range(MAX_WRITES):
            value = store.incr(GUILD_ID, COUNTER_KEY)
            print(f"ack {value}", flush=True)


async def write_scripts(path: str) -> None:
    async with await Storage.open(path, SandboxLimits()) as storage:
        for n in range(1, MAX_WRITES + 1):
            record = await storage.save_script(GUILD_ID, SCRIPT_NAME, f"return {{}} -- {n}", 7, ["message"])
            print(f"ack {record.version}", flush=True)


def main(argv: list[str]) -> None:
    path, mode = argv
    if mode == "kv":
        write_kv(path)
    elif mode == "scripts":
        asyncio.run(write_scripts(path))
    else:
        raise SystemExit(f"unknown mode {mode!r}; use kv or scripts")


if __name__ == "__main__":
    main(sys.argv[1:])
