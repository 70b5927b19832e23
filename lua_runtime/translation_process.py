"""Translating Luau in a child process, for the strategies whose workers are threads of the bot.

Translation is guest-controlled work: the lexer, tree-sitter and the translator all run on what an
admin uploaded, and all of them hold the GIL while they do. In a worker *thread* a translation that
stalls would freeze the bot's event loop with it (the gateway heartbeat included), and one that
exhausts memory would take the bot's process down. So under the ``threadpool`` and
``thread-per-guild`` strategies every translation the bot's process has not cached yet is made in
a child process, under a wall-clock deadline and a memory rlimit. A child that misses its deadline
is killed, and the next translation starts a fresh one. (Under ``processpool`` the worker process
is already that child, supervised by the pool; see ``pool/processpool.py``.)

:class:`TranslationProcess` is the bot's side: one child, serving one translation at a time, shared
by every worker thread of the process (:func:`shared_translator`). Its results are cached in the bot's
process (``lua_runtime.luau.remember_translation``), so a script is translated in a child once, and
every VM build after that finds it in the cache.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from lua_runtime.luau import LuauSyntaxError, cached_translation, remember_translation, translate

log = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("spawn")

#: Address space a worker process, or a translation child, may use by default, in bytes
#: (``VM_WORKER_MEMORY``). A worker process holding 10,000 idle guild VMs measures about 1 GiB,
#: and a full guild heap is 16 MiB: 4 GiB leaves room for hundreds of full heaps at once, and stops
#: a runaway at a size the machine survives.
DEFAULT_MEMORY_BYTES = 4 * 1024 * 1024 * 1024
#: How long a child has to exit once told to, before it is killed.
STOP_SECONDS = 1.0


class TranslationAborted(Exception):
    """A translation that was stopped rather than finished (too slow, too much memory, the child
    died); the message is for the script's author and says which."""


def _child_main(requests: Connection, memory_bytes: int) -> None:
    """The child: translate each source it is sent, and answer with a plain tuple."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            source = requests.recv()
        except (EOFError, OSError):
            return
        answer: tuple[Any, ...]
        try:
            answer = ("ok", translate(source))
        except LuauSyntaxError as exc:
            answer = ("syntax", exc.line, exc.column, exc.message)
        except MemoryError:
            answer = ("memory",)
        except RecursionError:
            answer = ("syntax", 1, 1, "the script is nested too deeply to compile")
        except Exception as exc:  # a bug in the translator: say so, keep serving
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            requests.send(answer)
        except (BrokenPipeError, OSError):
            return


class TranslationProcess:
    """One child process that translates Luau for the bot's process; thread-safe.

    ``translate(source)`` answers from the bot's cache when it can, and otherwise from the child,
    waiting at most ``deadline_seconds``. It raises :class:`LuauSyntaxError` for a script that is
    not valid Luau, and :class:`TranslationAborted` when the child missed its deadline, ran out of
    memory or died; the child is then replaced on the next call.
    """

    def __init__(self, deadline_seconds: float, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.deadline_seconds = deadline_seconds
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None
        #: Children started so far (a killed child is replaced by a new one).
        self.started = 0

    def translate(self, source: str) -> str:
        cached = cached_translation(source)
        if cached is not None:
            return cached
        with self._lock:
            answer = self._ask(source)
        kind = answer[0]
        if kind == "ok":
            remember_translation(source, answer[1])
            return answer[1]
        if kind == "syntax":
            _, line, column, message = answer
            raise LuauSyntaxError(line, column, message)
        if kind == "memory":
            raise TranslationAborted(too_much_memory(source))
        log.error("the Luau translator failed: %s", answer[1])
        raise TranslationAborted(f"the compiler failed on this script ({answer[1]})")

    __call__ = translate

    def _ask(self, source: str) -> tuple[Any, ...]:
        conn = self._connection()
        try:
            conn.send(source)
            if conn.poll(max(0.0, self.deadline_seconds)):
                return conn.recv()
        except (EOFError, OSError):
            self._stop()
            raise TranslationAborted(
                f"the compiler stopped while compiling this script ({_size(source)}): it needed "
                "too much memory; simplify or split it"
            ) from None
        self._stop()
        log.warning("a translation ran past its %g s deadline; its process was killed", self.deadline_seconds)
        raise TranslationAborted(
            f"this script took too long to compile ({_size(source)}; the limit is "
            f"{self.deadline_seconds:g} s); simplify or split it"
        )

    def _connection(self) -> Connection:
        if self._conn is None:
            ours, theirs = _CONTEXT.Pipe(duplex=True)
            process = _CONTEXT.Process(
                target=_child_main, args=(theirs, self.memory_bytes), name="warden-translate", daemon=True
            )
            process.start()
            theirs.close()
            self._process, self._conn = process, ours
            self.started += 1
        return self._conn

    def _stop(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                process.kill()
            process.join(STOP_SECONDS)

    def close(self) -> None:
        """Stop the child, if one runs (it is started again on the next call)."""
        with self._lock:
            self._stop()


def _size(source: str) -> str:
    return f"{len(source.encode('utf-8', 'surrogatepass'))} bytes"


def too_much_memory(source: str) -> str:
    """What an author reads when translating ``source`` ran out of memory, wherever it ran."""
    return f"this script needs too much memory to compile ({_size(source)}); simplify or split it"


_SHARED: dict[tuple[float, int], TranslationProcess] = {}
_SHARED_LOCK = threading.Lock()


def shared_translator(
    deadline_seconds: float, memory_bytes: int = DEFAULT_MEMORY_BYTES
) -> TranslationProcess:
    """The process's translation child for these limits, shared by every worker thread (one child
    per process is plenty: a script is translated once, then served from the cache)."""
    key = (deadline_seconds, memory_bytes)
    with _SHARED_LOCK:
        translator = _SHARED.get(key)
        if translator is None:
            translator = _SHARED[key] = TranslationProcess(deadline_seconds, memory_bytes)
        return translator


@atexit.register
def _stop_children() -> None:
    for translator in list(_SHARED.values()):
        translator.close()
