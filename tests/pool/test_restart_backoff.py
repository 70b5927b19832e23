"""A worker that dies young is replaced after a back-off that grows, so a fault at setup cannot
make the pool spin; requests sent meanwhile wait for the replacement, and closing does not."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool, WorkerCrashed
from lua_runtime.pool.provider import SharedProvider
from lua_runtime.pool.threadpool import RestartBackoff
from tests.pool.conftest import LIMITS, counter, message, printed


def test_young_deaths_in_a_row_triple_the_wait_up_to_the_cap() -> None:
    backoff = RestartBackoff(first_seconds=1.0, max_seconds=10.0)
    now, waits = 100.0, []
    for _ in range(5):
        waits.append(backoff.delay_after(0.2, now))
        now += waits[-1] + 0.2  # each replacement dies 0.2 s after it starts
    assert waits == [1.0, 3.0, 9.0, 10.0, 10.0]


def test_a_worker_that_lived_is_replaced_at_once_and_the_count_starts_afresh() -> None:
    backoff = RestartBackoff(first_seconds=1.0, max_seconds=10.0)
    assert [backoff.delay_after(0.2, 100.0), backoff.delay_after(0.2, 101.2)] == [1.0, 3.0]
    assert backoff.delay_after(RestartBackoff.STABLE_SECONDS, 200.0) == 0.0  # it lived
    assert backoff.delay_after(0.2, 201.0) == 1.0


def test_a_young_death_long_after_the_last_one_waits_the_first_delay_again() -> None:
    backoff = RestartBackoff(first_seconds=1.0, max_seconds=10.0)
    assert [backoff.delay_after(0.2, 100.0), backoff.delay_after(0.2, 101.2)] == [1.0, 3.0]
    # The replacement started at 104.2 and served for weeks; another worker then dies young.
    assert backoff.delay_after(0.2, 1_000_000.0) == 1.0


class BrokenThenMended:
    """A provider factory (called on each worker as it starts) that fails ``failures`` times after
    its first call, as a database that cannot be opened for a while would."""

    def __init__(self, scripts: InMemoryScripts, failures: int) -> None:
        self._scripts = scripts
        self._failures = failures
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self):
        with self._lock:
            self.calls += 1
            failing = 1 < self.calls <= 1 + self._failures
        if failing:
            raise OSError("unable to open database file")
        return SharedProvider(self._scripts)()


async def test_a_worker_that_dies_at_every_start_is_retried_after_growing_waits_not_in_a_loop(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # However slow the machine, the first worker's death counts as young.
    monkeypatch.setattr(RestartBackoff, "STABLE_SECONDS", 600.0)
    factory = BrokenThenMended(InMemoryScripts({1: [counter()]}), failures=3)
    config = PoolConfig(
        strategy="threadpool", workers=1, restart_backoff_seconds=0.05, restart_backoff_max_seconds=0.2
    )
    caplog.set_level(logging.INFO, logger="lua_runtime.pool")
    async with VmPool(factory, LIMITS, config) as pool:
        assert printed(await pool.dispatch(1, "message", message("a"))) == ["a:1"]
        await pool.inject_fault(1)
        # The next three replacements fail as they set up; each request sent meanwhile waits for a
        # replacement and fails with it, until one starts.
        failed = 0
        while True:
            try:
                result = await asyncio.wait_for(pool.dispatch(1, "message", message("b")), 10)
                break
            except WorkerCrashed as exc:
                assert "unable to open database file" in str(exc)
                failed += 1
        assert printed(result) == ["b:1"]
    waits = [
        r.getMessage().split(" in ")[1].split(" s")[0]
        for r in caplog.records
        if " replaces worker " in r.getMessage()
    ]
    assert waits == ["0.05", "0.15", "0.2", "0.2"]
    assert factory.calls == 5  # the first worker, three that failed, the one that serves: no spin
    assert 1 <= failed <= 3


async def test_closing_the_pool_does_not_wait_out_a_replacements_back_off() -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    config = PoolConfig(
        strategy="threadpool", workers=1, restart_backoff_seconds=60.0, restart_backoff_max_seconds=60.0
    )
    pool = VmPool(scripts, LIMITS, config)
    await pool.start()
    assert printed(await pool.dispatch(1, "message", message("a"))) == ["a:1"]
    await pool.inject_fault(1)  # a young death: its replacement waits a minute
    waiting = pool.submit(2, "message", message("b"))
    await asyncio.wait_for(pool.close(), 10)
    # The shutdown ended the wait: the replacement started, served what it held, and stopped.
    assert printed(await waiting) == ["b:1"]


async def test_stats_do_not_wait_for_a_replacement_still_waiting_to_start() -> None:
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})
    config = PoolConfig(
        strategy="threadpool", workers=2, restart_backoff_seconds=60.0, restart_backoff_max_seconds=60.0
    )
    async with VmPool(scripts, LIMITS, config) as pool:
        await asyncio.gather(*(pool.dispatch(g, "message", message("a")) for g in (1, 2)))
        await pool.inject_fault(1)  # a young death: its replacement waits a minute
        stats = await asyncio.wait_for(pool.stats(), 10)
        assert sorted(worker.resident_vms for worker in stats.workers) == [0, 1]
        # Guild 1 goes to the worker that runs, not to the one waiting.
        assert printed(await asyncio.wait_for(pool.dispatch(1, "message", message("b")), 10)) == ["b:1"]
