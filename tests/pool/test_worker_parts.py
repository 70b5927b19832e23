"""The pieces the worker loop is built from, each on its own: a guild's slot (its CPU bucket and
action window), the timer heap, and the check requests."""

from __future__ import annotations

import pytest

from lua_runtime.guild_vm import ScriptSource
from lua_runtime.limits import SandboxLimits
from lua_runtime.luau import translate
from lua_runtime.pool import checks
from lua_runtime.pool.checks import CHECKS, Check
from lua_runtime.pool.errors import RequestFailed
from lua_runtime.pool.guild_slot import GuildSlot
from lua_runtime.pool.messages import DryRunScript, Failure, LoadScript
from lua_runtime.pool.timer_heap import TimerHeap
from tests.pool.conftest import LIMITS, counter

#: Stands in for a guild's VM where only its presence matters.
A_VM = object()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _slot_with_vm(guild_id: int) -> GuildSlot:
    slot = GuildSlot(guild_id, tokens=1.0, now=0.0)
    slot.vm = A_VM  # type: ignore[assignment]
    return slot


# --- the CPU bucket and the action window ---------------------------------------------------------


def test_a_bucket_refills_with_time_up_to_its_budget_and_is_empty_once_overdrawn() -> None:
    slot = GuildSlot(1, tokens=1.0, now=0.0)
    slot.tokens = -0.5  # an event overdrew it
    assert not slot.refill(now=1.0, rate=0.25, budget=1.0)  # -0.25: still empty
    assert not slot.refill(now=2.0, rate=0.25, budget=1.0)  # 0.0: empty, not overdrawn
    assert slot.refill(now=3.0, rate=0.25, budget=1.0)
    assert slot.tokens == 0.25
    assert slot.refill(now=100.0, rate=0.25, budget=1.0)
    assert slot.tokens == 1.0  # never more than the budget, however long it waited


def test_the_action_window_reads_the_clock_only_once_the_guild_has_acted() -> None:
    limits = SandboxLimits(max_actions_per_window=5, action_window_seconds=10)
    slot = GuildSlot(1, tokens=1.0, now=0.0)

    def no_clock() -> float:
        raise AssertionError("the clock was read for a guild that never acted")

    assert slot.action_allowance(no_clock, limits) == 5
    slot.record_actions(1.0, 3, limits)
    assert slot.action_allowance(lambda: 2.0, limits) == 2
    assert slot.action_allowance(lambda: 11.5, limits) == 5  # the actions left the window


# --- the timer heap ------------------------------------------------------------------------------


def test_the_heap_wakes_a_guild_once_at_its_earliest_timer() -> None:
    clock = Clock()
    heap = TimerHeap(clock)
    slot = _slot_with_vm(1)
    slots = {1: slot}
    heap.wake(slot, 10.0)
    heap.wake(slot, 5.0)  # an earlier timer takes over
    heap.wake(slot, 7.0)  # a later one changes nothing
    assert heap.seconds_to_next() == 5.0
    clock.now = 4.9
    assert list(heap.take_due(slots)) == []
    clock.now = 5.0
    assert list(heap.take_due(slots)) == [slot]
    clock.now = 20.0
    assert list(heap.take_due(slots)) == []  # the entry at 10 was stale
    assert not heap and heap.seconds_to_next() is None


def test_the_heap_skips_guilds_that_left_or_lost_their_vm() -> None:
    clock = Clock()
    heap = TimerHeap(clock)
    left, closed, live = _slot_with_vm(1), _slot_with_vm(2), _slot_with_vm(3)
    for slot in (left, closed, live):
        heap.wake(slot, 1.0)
    closed.replace_vm(None)
    clock.now = 2.0
    assert list(heap.take_due({2: closed, 3: live})) == [live]


# --- the check requests --------------------------------------------------------------------------


def _failure(check: Check, action: DryRunScript | LoadScript) -> Failure:
    with pytest.raises(RequestFailed) as failed:
        check.carry_out(action, LIMITS, translate, None)
    return failed.value.failure


@pytest.mark.parametrize(
    ("action", "sandbox"),
    [
        (DryRunScript(1, 7, counter(), "message", None), "the test sandbox"),
        (LoadScript(1, 7, counter()), "the sandbox that checks scripts"),
    ],
)
@pytest.mark.parametrize("error", [KeyError, RuntimeError, MemoryError])
def test_a_check_that_fails_unexpectedly_says_which_sandbox_failed(action, sandbox, error) -> None:
    def broken(*_args: object) -> None:
        raise error("boom")

    check = CHECKS[type(action)]
    failure = _failure(Check(check.cpu_budgets, broken, check.doing, sandbox), action)
    assert failure == Failure("vm_failed", f"{sandbox} failed ({error.__name__})")


@pytest.mark.parametrize("event", ["no_such_event", "MESSAGE", "message "])
def test_a_dry_run_of_an_unknown_event_is_the_requests_fault(event: str) -> None:
    failure = _failure(CHECKS[DryRunScript], DryRunScript(1, 7, counter(), event, None))
    assert failure.kind == "invalid_request" and repr(event) in failure.message


def test_an_upload_too_big_to_compile_is_the_requests_fault(monkeypatch) -> None:
    def out_of_memory(*_args: object, **_kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(checks, "load_script", out_of_memory)
    script = ScriptSource("huge", "local x = 1\n" * 10)
    failure = _failure(CHECKS[LoadScript], LoadScript(1, 7, script))
    assert failure == Failure(
        "invalid_request", "this script needs too much memory to compile (120 bytes); simplify or split it"
    )


def test_checks_run_in_a_sandbox_of_their_own() -> None:
    run = CHECKS[LoadScript].carry_out(LoadScript(1, 7, counter()), LIMITS, translate, None)
    assert run.ok and run.handled_events == ["message"]
    run = CHECKS[DryRunScript].carry_out(
        DryRunScript(2, 7, counter(), "message", None), LIMITS, translate, None
    )
    assert run.ok and run.output == ["hello everyone, check out this badword:1"]
