"""Worker threads taking turns at running Python: what keeps the thread pool's GIL in one place.

CPython runs one thread's Python at a time (the GIL). A worker thread gives the GIL up for each guest
call (lupa runs Lua without it) and takes it back when the call returns. When other threads want it
meanwhile, it changes hands, and cores, at every call; each change costs the next thread cold caches
and a wake-up, which for a trivial event is more than the event's own Lua. Measured with
``bench/dispatch.py``'s 100 guilds and trivial script on 2 cores: two workers spent about 30 µs of
CPU per event where one thread calling the same VMs spends 15.

So the thread pool's workers share an :class:`InterpreterTurn`. A worker serves the events and timers
of its *light* guilds (those whose events take little CPU: see ``guild_slot.py``) holding the turn, for
one slice at most; the other workers wait for it on a lock, not on the GIL, and the GIL stays with
the holder across its guest calls. Other requests are served without the turn, so long guest calls
still run in parallel.

The event loop takes no turn (it must never wait for a worker), but workers let it go first: when a
worker hands it records, the loop has their continuations to run, and a worker that served light
requests meanwhile would fight it for the GIL at every guest call. So :meth:`InterpreterTurn.enter`
also waits, briefly, until the loop has run the callbacks queued with the last records.

The turn only ever costs waiting, bounded: nobody waits for it longer than :data:`TURN_WAIT_SECONDS`
(a holder stuck in a slow call, say a SQLite write waiting for its lock, delays the others that
long, then they go on without it), nor for the loop longer than :data:`LOOP_WAIT_SECONDS`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Protocol

#: Longest a worker waits for the turn before it serves its requests without it.
TURN_WAIT_SECONDS = 0.005
#: Longest a worker holding the turn waits for the event loop to run the continuations of the
#: records it was handed.
LOOP_WAIT_SECONDS = 0.001


class Turn(Protocol):
    """What the worker loop needs of a turn (:class:`InterpreterTurn` is the one): shared by worker
    threads, so that they take turns at running Python rather than trade the GIL at every guest
    call. Entered and left on the worker, around a run of light requests within one slice."""

    def enter(self) -> bool:
        """Take the turn (waiting a bounded time); True when taken, and :meth:`leave` is owed."""
        ...

    def leave(self) -> None: ...


class InterpreterTurn:
    """A fair, advisory turn among worker threads, and a signal of the event loop's backlog.

    Fair: the turn passes to the worker that has waited longest (a plain lock would let a worker
    that leaves and re-enters at once keep it). Advisory: :meth:`enter` says whether the turn was
    taken; a worker that waited :data:`TURN_WAIT_SECONDS` goes on without it.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        #: One locked gate per waiting worker, oldest first; the holder hands over by opening one.
        self._waiting: deque[threading.Lock] = deque()
        self._loop_caught_up = threading.Event()
        self._loop_caught_up.set()

    def enter(self) -> bool:
        """Take the turn, waiting for it (and then for the event loop) within the bounds above.
        True when the caller holds the turn and must :meth:`leave` it."""
        with self._mutex:
            if not self._held:
                self._held = True
                gate = None
            else:
                gate = threading.Lock()
                gate.acquire()
                self._waiting.append(gate)
        if gate is not None and not gate.acquire(timeout=TURN_WAIT_SECONDS):
            with self._mutex:
                if gate in self._waiting:
                    self._waiting.remove(gate)
                    return False
            # Handed over between the timeout and the mutex: the turn is ours after all.
        self._loop_caught_up.wait(LOOP_WAIT_SECONDS)
        return True

    @property
    def waiting(self) -> int:
        """How many workers wait for the turn right now."""
        return len(self._waiting)

    def leave(self) -> None:
        """Give the turn to the longest waiting worker, or free it."""
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._held = False

    def records_delivered(self, loop: asyncio.AbstractEventLoop) -> None:
        """A worker just handed records to ``loop`` (any thread): workers entering the turn wait
        until the loop has run the callbacks those records queue."""
        self._loop_caught_up.clear()
        try:
            # The first hop runs after the records' own callback; the second after what that
            # callback queued (resolved futures wake their tasks with call_soon): the loop's backlog.
            loop.call_soon_threadsafe(loop.call_soon, self._loop_caught_up.set)
        except RuntimeError:  # the loop is closed: nobody is left to wait for
            self._loop_caught_up.set()
