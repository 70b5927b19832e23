"""A program that forgets to close its process pool still exits, and leaves no worker behind.

Worker processes ignore SIGTERM (a service manager's stop reaches the whole process group, and the
bot drains them itself), so the module's exit handler must kill them before multiprocessing's own
handler waits for them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FORGETFUL = """
import asyncio, multiprocessing
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool
from tests.pool.conftest import LIMITS, counter, message

async def main():
    pool = VmPool(InMemoryScripts({1: [counter()]}), LIMITS, PoolConfig(strategy="processpool", workers=2))
    await pool.start()
    await pool.dispatch(1, "message", message("x"))
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)

asyncio.run(main())
"""


def test_exiting_without_closing_the_pool_kills_its_workers() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORGETFUL], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
