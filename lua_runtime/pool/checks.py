"""The check requests a worker serves: code nobody has run yet, run in a sandbox of its own.

An upload is checked (:class:`LoadScript`: translated, compiled and its top level run, against an
empty store) and ``/script test`` runs one script against one event (:class:`DryRunScript`). The
facade sends both to the check lane, a worker that holds no guild's VM; neither touches the guild's
VM wherever it runs. The worker loop (``worker.py``) serves them all alike: it arms its watchdog
with the check's CPU budget, has the :class:`Check` carry the request out, and replies with the
:class:`~lua_runtime.dry_run.DryRun` or the failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lua_runtime.dry_run import MAX_CPU_BUDGETS, DryRun, dry_run, load_script
from lua_runtime.guild_vm import Translator
from lua_runtime.kv_store import DryRunKV, KeyValueStore
from lua_runtime.limits import SandboxLimits
from lua_runtime.pool.errors import RequestFailed
from lua_runtime.pool.messages import DryRunScript, Failure, LoadScript
from lua_runtime.translation_process import too_much_memory

log = logging.getLogger(__name__)

#: A check's own work: runs the request with the worker's limits, translator and KV store, and
#: raises :class:`RequestFailed` for what is the request's fault (an answer for its author).
CheckRun = Callable[[Any, SandboxLimits, Translator, KeyValueStore | None], DryRun]


@dataclass(frozen=True, slots=True)
class Check:
    """One kind of check request, and how its failures are told."""

    #: The CPU the check may take, in event budgets: what the watchdog is armed with.
    cpu_budgets: int
    run: CheckRun
    #: Names the check in the log: "guild 1: {doing} {script} failed".
    doing: str
    #: Names the check's sandbox to admins: "{sandbox} failed (KeyError)".
    sandbox: str

    def carry_out(
        self,
        action: DryRunScript | LoadScript,
        limits: SandboxLimits,
        translate: Translator,
        kv_store: KeyValueStore | None,
    ) -> DryRun:
        """Run the check; raise :class:`RequestFailed` when it produced no run. An unexpected
        error costs the check only: its sandbox is its own, so no guild's VM is involved."""
        try:
            return self.run(action, limits, translate, kv_store)
        except RequestFailed:
            raise
        except Exception as exc:
            log.exception("guild %s: %s %s failed", action.guild_id, self.doing, action.script.name)
            failure = Failure("vm_failed", f"{self.sandbox} failed ({type(exc).__name__})")
            raise RequestFailed(failure) from None


def _dry_run(
    action: DryRunScript, limits: SandboxLimits, translate: Translator, kv_store: KeyValueStore | None
) -> DryRun:
    try:
        # Reads see the guild's data; writes stay in the run.
        kv = DryRunKV(limits, kv_store)
        return dry_run(action.script, action.event, action.payload, limits, kv, translate)
    except ValueError as exc:  # an unknown event, a payload that is not plain data
        raise RequestFailed(Failure("invalid_request", str(exc))) from None


def _load_script(
    action: LoadScript, limits: SandboxLimits, translate: Translator, kv_store: KeyValueStore | None
) -> DryRun:
    try:
        return load_script(action.script, limits, translator=translate)  # against an empty store
    except MemoryError:
        # The translation of a hostile source in a worker process under its memory rlimit.
        raise RequestFailed(Failure("invalid_request", too_much_memory(action.script.source))) from None


#: The check requests, by message type.
CHECKS: dict[type, Check] = {
    # A dry run builds a VM, runs a handler and follows the timers it sets.
    DryRunScript: Check(MAX_CPU_BUDGETS, _dry_run, "a dry run of", "the test sandbox"),
    # Translating it, building its VM and running its top level: a build of one script, which costs
    # its top level's event budget and about one more (see WorkerLoop._build_budget).
    LoadScript: Check(2, _load_script, "checking", "the sandbox that checks scripts"),
}
