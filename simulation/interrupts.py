"""Ctrl-C and SIGTERM: stop any stage within seconds, say which one, and leave no process behind.

The first SIGINT/SIGTERM raises `Interrupted` in the main thread, so context managers unwind
(embedded Redis, the Spark JVM, Ray, the deployment daemons stop as they do on errors), and
arms a watchdog: if the unwinding has not finished after `GRACE_S` (Ray can hang in its own
start-up, a library can swallow the exception), the process ends anyway. A second signal ends
it at once. Either way every descendant still alive is killed first: the CLI is a child
subreaper (PR_SET_CHILD_SUBREAPER), so processes whose parent died (Ray's agents after raylet,
Flower's superexec after its daemon) are re-parented to it instead of init and are found.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator

import psutil

log = logging.getLogger(__name__)

GRACE_S = 6.0  # unwinding budget before the watchdog ends the process (the bound is 15 s)
_PR_SET_CHILD_SUBREAPER = 36
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """Raised in the main thread by the first SIGINT/SIGTERM (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int, stage: str) -> None:
        super().__init__(f"{signal.Signals(signum).name} during {stage}")
        self.signum, self.stage = signum, stage

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)


class _State:
    """Which stage runs now, how many signals came, whether the line was said (signals are per process)."""

    stage = "start-up"
    signals = 0
    handled = False  # the Python-level handler ran (the main thread got to raise Interrupted)
    handler: Callable[[int, object], None] | None = None
    said = threading.Lock()
    wakeup: tuple[socket.socket, socket.socket] | None = None


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the stage a signal would interrupt (kept when the stage ends by an exception, for the line)."""
    before, _State.stage = _State.stage, name
    yield
    _State.stage = before


def current_stage() -> str:
    return _State.stage


def message(signum: int, stage_name: str) -> str:
    """The one line the CLI prints."""
    return f"interrupted: {signal.Signals(signum).name} during stage {stage_name}; stopped, nothing left running"


def say_once(say: Callable[[str], None], signum: int, stage_name: str) -> None:
    """Print the interruption line once, whoever gets there first (the main thread or the watchdog)."""
    if _State.said.acquire(blocking=False):
        say(message(signum, stage_name))


def install(say: Callable[[str], None]) -> None:
    """Handle SIGINT/SIGTERM in this process; `say(line)` prints the one interruption line.

    Python runs a signal handler only when the main thread next executes bytecode, which can be
    many seconds when it waits inside a C call (Ray's start-up waited 9 s). So the C-level
    handler's wakeup byte (signal.set_wakeup_fd) is read by a thread that arms the deadline at
    once, and ends the process itself on a second signal.
    """
    on_hard_exit = lambda signum, stage_name: say_once(say, signum, stage_name)  # noqa: E731
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def handler(signum: int, _frame: object) -> None:
        _State.handled = True
        log.info("%s received during stage %s: stopping", signal.Signals(signum).name, _State.stage)
        raise Interrupted(signum, _State.stage)

    _State.handler = handler
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    _State.wakeup = (reader, writer)  # referenced for the life of the process: GC would close the fds
    threading.Thread(target=_watch, args=(reader, on_hard_exit), name="edgecache-signals", daemon=True).start()


def _watch(reader: socket.socket, on_hard_exit: Callable[[int, str], None]) -> None:
    """First SIGINT/SIGTERM: end the process GRACE_S later if it is still unwinding; second: now."""
    while True:
        try:
            data = reader.recv(64)
        except OSError:
            return
        for signum in data:
            if signum not in (signal.SIGINT, signal.SIGTERM):
                continue
            _State.signals += 1
            if _State.signals > 1:
                hard_exit(signum, on_hard_exit, grace_s=0.0)
            timer = threading.Timer(GRACE_S, _overdue, (signum, on_hard_exit))
            timer.daemon = True
            timer.start()


def diagnosis(signum: int) -> str:
    """Why the unwinding is overdue: a blocked main thread, or a library that replaced our handler."""
    ours = signal.getsignal(signum) is _State.handler and _State.handler is not None
    if _State.handled:
        where = "the handler ran and the unwinding is still running"
    elif ours:
        where = "the main thread has not run the handler yet (blocked in a C call)"
    else:
        where = "another library replaced the handler"
    return f"{where}; the installed {signal.Signals(signum).name} handler is {'edgecache' if ours else 'foreign'}"


def _overdue(signum: int, on_hard_exit: Callable[[int, str], None]) -> None:
    log.warning("still stopping %.0f s after %s (%s): ending the process", GRACE_S,
                signal.Signals(signum).name, diagnosis(signum))
    hard_exit(signum, on_hard_exit, 0.5)


def hard_exit(signum: int, on_hard_exit: Callable[[int, str], None], grace_s: float) -> None:
    """Kill every descendant and end the process now (threads that would block exit are ignored)."""
    with contextlib.suppress(Exception):
        on_hard_exit(signum, _State.stage)
    end_descendants(grace_s)
    sys.stdout.flush()
    os._exit(EXIT_CODES.get(signal.Signals(signum), 128 + signum))


def end_descendants(grace_s: float = 3.0, rounds: int = 5) -> list[int]:
    """SIGTERM every live descendant, SIGKILL those left after `grace_s`; again for any a dying
    parent started meanwhile (raylet spawns its agents late); return their pids."""
    ended: list[int] = []
    for _ in range(rounds):
        try:
            procs = [p for p in psutil.Process().children(recursive=True) if p.pid not in ended]
        except psutil.Error:
            break
        if not procs:
            break
        _end(procs, grace_s)
        ended += [p.pid for p in procs]
        grace_s = min(grace_s, 0.5)
    return ended


def _end(procs: list[psutil.Process], grace_s: float) -> None:
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s) if grace_s > 0 else ([], procs)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=3)
    log.info("ended %d leftover process(es): %s", len(procs), _names(procs))


def _names(procs: list[psutil.Process]) -> str:
    out = []
    for p in procs[:8]:
        with contextlib.suppress(psutil.Error):
            out.append(f"{p.pid}:{p.name()}")
    return ", ".join(out)
