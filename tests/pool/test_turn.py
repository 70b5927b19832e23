"""The thread pool's interpreter turn: fair, bounded, let go of whatever happens, and used by the
worker loop for light guilds only."""

from __future__ import annotations

import asyncio
import threading
import time

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.pool import InMemoryScripts, PoolConfig, VmPool, guild_slot
from lua_runtime.pool import turn as turn_module
from lua_runtime.pool.config import build_strategy
from lua_runtime.pool.messages import DispatchEvent, Shutdown, WorkerExit
from lua_runtime.pool.provider import SharedProvider
from lua_runtime.pool.turn import InterpreterTurn
from lua_runtime.pool.worker import WorkerSettings, serve
from tests.pool.conftest import LIMITS, SPINNER, counter, message, printed
from tests.pool.test_worker import PickledInbox, PickledOutbox, _replies

SETTINGS = WorkerSettings(LIMITS, cpu_seconds=10.0, cpu_window_seconds=10.0)

#: Bounds a test's wait for a thread that should finish: a hang fails the test instead of the run.
JOIN = 10.0


def _until(condition, bound: float = JOIN) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.001)


def _enter_in_thread(turn: InterpreterTurn, log: list[str], name: str) -> threading.Thread:
    def run() -> None:
        log.append(f"{name}:{turn.enter()}")
        turn.leave()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_turn_passes_to_the_workers_in_the_order_they_asked(monkeypatch) -> None:
    monkeypatch.setattr(turn_module, "TURN_WAIT_SECONDS", 60.0)
    turn = InterpreterTurn()
    assert turn.enter() is True
    log: list[str] = []
    threads = []
    for queued, name in enumerate("abc", start=1):
        threads.append(_enter_in_thread(turn, log, name))
        _until(lambda queued=queued: turn.waiting == queued)
    turn.leave()
    for thread in threads:
        thread.join(JOIN)
    assert log == ["a:True", "b:True", "c:True"]
    assert turn.waiting == 0 and turn.enter() is True  # the last one freed it


def test_a_worker_does_not_wait_past_the_bound_for_a_holder_that_never_leaves(monkeypatch) -> None:
    monkeypatch.setattr(turn_module, "TURN_WAIT_SECONDS", 0.01)
    turn = InterpreterTurn()
    assert turn.enter() is True
    assert turn.enter() is False  # the holder is stuck (a slow SQLite write, say): go on without it
    assert turn.waiting == 0
    turn.leave()
    assert turn.enter() is True  # nobody was handed the turn on the way out: it is free


def test_entering_waits_for_the_loop_to_run_what_the_last_records_queued(monkeypatch) -> None:
    monkeypatch.setattr(turn_module, "LOOP_WAIT_SECONDS", 60.0)
    turn = InterpreterTurn()
    loop = asyncio.new_event_loop()
    try:
        turn.records_delivered(loop)
        log: list[str] = []
        thread = _enter_in_thread(turn, log, "worker")
        time.sleep(0.05)
        assert log == []  # the loop has not run yet: the worker lets it go first
        loop.run_until_complete(asyncio.sleep(0))  # the records' callbacks, then what they queued
        loop.run_until_complete(asyncio.sleep(0))
        thread.join(JOIN)
        assert log == ["worker:True"]
    finally:
        loop.close()


def test_the_wait_for_the_loop_is_bounded_and_a_closed_loop_is_no_wait(monkeypatch) -> None:
    monkeypatch.setattr(turn_module, "LOOP_WAIT_SECONDS", 0.01)
    turn = InterpreterTurn()
    loop = asyncio.new_event_loop()
    turn.records_delivered(loop)  # a loop that never runs: entering waits 10 ms, then goes on
    assert turn.enter() is True
    turn.leave()
    loop.close()
    monkeypatch.setattr(turn_module, "LOOP_WAIT_SECONDS", 60.0)
    turn.records_delivered(loop)  # closed: nothing to wait for, and no error
    assert turn.enter() is True


class RecordingTurn:
    """A turn that logs, beside a watchdog that logs each request's guild: together they show
    which requests the loop served holding the turn."""

    def __init__(self, log: list[str], grant: bool = True) -> None:
        self.log = log
        self.grant = grant

    def enter(self) -> bool:
        self.log.append("enter")
        return self.grant

    def leave(self) -> None:
        self.log.append("leave")


class GuildLog:
    def __init__(self, log: list[str], fail_on: int | None = None) -> None:
        self.log = log
        self.fail_on = fail_on

    def arm(self, cpu_budget_seconds: float, guild_id: int) -> None:
        if guild_id == self.fail_on:
            raise RuntimeError("the loop itself failed")
        if cpu_budget_seconds == LIMITS.cpu_ms_per_event / 1000:  # a request (VM builds arm again)
            self.log.append(f"g{guild_id}")

    def disarm(self) -> None:
        pass


def _serve_light_and_heavy(log: list[str], turn: RecordingTurn, watchdog: GuildLog) -> PickledOutbox:
    """Guild 1 is light (a counter), guild 2 heavy (it spends its whole CPU limit). Each batch is
    one slice: one event of each, in the order given."""
    scripts = InMemoryScripts({1: [counter()], 2: [ScriptSource("spin", SPINNER)]})
    batches = [
        [DispatchEvent(1, 1, "message", message("a")), DispatchEvent(2, 2, "message", message("x"))],
        [DispatchEvent(3, 1, "message", message("b")), DispatchEvent(4, 2, "message", message("y"))],
        [DispatchEvent(5, 2, "message", message("z")), DispatchEvent(6, 1, "message", message("c"))],
        [Shutdown(0, 5.0)],
    ]
    outbox = PickledOutbox()
    serve(1, PickledInbox(batches), outbox, SharedProvider(scripts), SETTINGS, watchdog=watchdog, turn=turn)
    return outbox


def test_the_loop_holds_the_turn_for_light_guilds_only(monkeypatch) -> None:
    # A light guild's event takes well under 5 ms of CPU even on a slow machine; the spinner 20 ms.
    monkeypatch.setattr(guild_slot, "LIGHT_REQUEST_SECONDS", 0.005)
    log: list[str] = ["start"]
    outbox = _serve_light_and_heavy(log, RecordingTurn(log), GuildLog(log))
    # First events: nothing known of either guild, so both run outside. Then guild 1 is light: its
    # events run holding the turn, which is left before the heavy guild's and at the slice's end.
    assert log[1:] == ["g1", "g2", "enter", "g1", "leave", "g2", "g2", "enter", "g1", "leave"]
    replies = _replies(outbox)
    assert [printed(replies[i].value) for i in (1, 3, 6)] == [["a:1"], ["b:2"], ["c:3"]]
    assert outbox.records[-1] == WorkerExit(1, None)


def test_a_turn_not_granted_is_not_left(monkeypatch) -> None:
    monkeypatch.setattr(guild_slot, "LIGHT_REQUEST_SECONDS", 0.005)
    log: list[str] = ["start"]
    _serve_light_and_heavy(log, RecordingTurn(log, grant=False), GuildLog(log))
    assert "leave" not in log and log.count("enter") == 2


def test_a_worker_that_crashes_holding_the_turn_leaves_it(monkeypatch) -> None:
    monkeypatch.setattr(guild_slot, "LIGHT_REQUEST_SECONDS", 0.005)
    log: list[str] = ["start"]
    scripts = InMemoryScripts({1: [counter()], 3: [counter()]})
    watchdog = GuildLog(log)
    batches = [
        [DispatchEvent(1, 1, "message", message("a")), DispatchEvent(2, 3, "message", message("b"))],
        # Both guilds are light now: the loop holds the turn for guild 1's event and guild 3's,
        # and fails as guild 3's starts.
        [DispatchEvent(3, 1, "message", message("c")), DispatchEvent(4, 3, "message", message("d"))],
    ]

    class FailingSecondBatch(PickledInbox):
        def take(self, timeout: float | None) -> list:
            if timeout != 0 and len(self._batches) == 1:
                watchdog.fail_on = 3
            return super().take(timeout)

    outbox = PickledOutbox()
    serve(
        1,
        FailingSecondBatch(batches),
        outbox,
        SharedProvider(scripts),
        SETTINGS,
        watchdog=watchdog,
        turn=RecordingTurn(log),
    )
    assert log[1:] == ["g1", "g3", "enter", "g1", "leave"]  # left although the loop failed holding it
    assert outbox.records[-1] == WorkerExit(1, "RuntimeError: the loop itself failed")


async def test_a_thread_pool_whose_workers_take_turns_answers_every_guild_in_order() -> None:
    guilds = range(1, 21)
    scripts = InMemoryScripts({guild: [counter()] for guild in guilds})
    async with VmPool(scripts, LIMITS, PoolConfig(strategy="threadpool", workers=2)) as pool:
        for round_ in range(1, 6):
            results = await asyncio.gather(
                *(pool.dispatch(guild, "message", message(str(guild))) for guild in guilds)
            )
            assert [printed(result) for result in results] == [[f"{g}:{round_}"] for g in guilds]
        stats = await pool.stats()
    assert sorted(worker.guilds for worker in stats.workers) == [10, 10]  # both workers took part


def test_only_the_thread_pools_workers_share_a_turn() -> None:
    def turn_of(strategy: str) -> object:
        built = build_strategy(PoolConfig(strategy=strategy), SharedProvider(InMemoryScripts({})), SETTINGS)
        return built._turn  # type: ignore[attr-defined]

    assert isinstance(turn_of("threadpool"), InterpreterTurn)
    assert turn_of("thread-per-guild") is None
    assert turn_of("processpool") is None


def test_one_slow_event_does_not_make_a_guild_heavy_but_two_in_a_row_do() -> None:
    slot = guild_slot.GuildSlot(1, tokens=1.0, now=0.0)
    assert not slot.light  # nothing known yet: its first event runs outside the turn
    slow, quick = 10 * guild_slot.LIGHT_REQUEST_SECONDS, guild_slot.LIGHT_REQUEST_SECONDS / 10
    outcomes = []
    for cost in (quick, slow, quick, slow, slow, slow, quick):
        slot.note_cost(cost)
        outcomes.append(slot.light)
    assert outcomes == [True, True, True, True, False, False, True]


def test_what_arrives_while_the_worker_waits_for_the_turn_is_served_in_that_turn(monkeypatch) -> None:
    monkeypatch.setattr(guild_slot, "LIGHT_REQUEST_SECONDS", 0.005)
    log: list[str] = ["start"]
    scripts = InMemoryScripts({1: [counter()], 2: [counter()]})

    class ArrivingInbox(PickledInbox):
        """Hands over guild 2's event while the loop waits for the turn for guild 1's."""

        def take(self, timeout: float | None) -> list:
            if timeout == 0 and log[-1] == "enter":
                return [DispatchEvent(4, 2, "message", message("arrived"))]
            return super().take(timeout)

    batches = [
        [DispatchEvent(1, 1, "message", message("a")), DispatchEvent(2, 2, "message", message("b"))],
        [DispatchEvent(3, 1, "message", message("c"))],
        [Shutdown(0, 5.0)],
    ]
    outbox = PickledOutbox()
    serve(
        1,
        ArrivingInbox(batches),
        outbox,
        SharedProvider(scripts),
        SETTINGS,
        watchdog=GuildLog(log),
        turn=RecordingTurn(log),
    )
    assert log[1:] == ["g1", "g2", "enter", "g1", "g2", "leave"]
    assert printed(_replies(outbox)[4].value) == ["arrived:2"]


def test_a_slice_asks_for_the_turn_once(monkeypatch) -> None:
    monkeypatch.setattr(guild_slot, "LIGHT_REQUEST_SECONDS", 0.005)
    log: list[str] = ["start"]
    scripts = InMemoryScripts({guild: [counter()] for guild in (1, 2, 3)})
    batches = [
        [DispatchEvent(guild, guild, "message", message("a")) for guild in (1, 2, 3)],
        [DispatchEvent(10 + guild, guild, "message", message("b")) for guild in (1, 2, 3)],
        [Shutdown(0, 5.0)],
    ]
    outbox = PickledOutbox()
    # A turn that is never granted (its holder is stuck): the slice goes on without it, and does
    # not wait for it again before each of its light requests.
    refused = RecordingTurn(log, grant=False)
    serve(
        1,
        PickledInbox(batches),
        outbox,
        SharedProvider(scripts),
        SETTINGS,
        watchdog=GuildLog(log),
        turn=refused,
    )
    assert log[1:] == ["g1", "g2", "g3", "enter", "g1", "g2", "g3"]
    assert [printed(_replies(outbox)[10 + guild].value) for guild in (1, 2, 3)] == [["b:2"]] * 3
