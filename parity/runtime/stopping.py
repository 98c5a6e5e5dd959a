"""Stopping as a scheduler asks: SIGTERM (Slurm and most schedulers send it on preemption or at the time limit,
then SIGKILL after a grace period) and SIGINT (Ctrl-C) are handled alike.

While a run trains, the first signal is only noted: the loop finishes the step in progress (a step is well under
a second on CPU, about 0.1 s at the paper's size on a GPU), writes the checkpoint, marks the run "interrupted" and
raises ``Interrupted``, so the rerun resumes from that step and ends bit-identical to an uninterrupted run. A
second signal, or one outside training, interrupts at once. ``Interrupted`` is a KeyboardInterrupt, so every
caller that lets Ctrl-C through lets it through too, and the command ends with one line naming the fix.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

HANDLED = (signal.SIGTERM, signal.SIGINT)
REPEAT_S = 2.0  # a signal this soon after the first is the same request (a scheduler's or a parent's burst)
_state = {"armed": 0, "requested": None, "at": 0.0}


class Interrupted(KeyboardInterrupt):
    """A stop requested by a signal: ``signal_name`` and, where a run was saved, ``where``."""

    def __init__(self, signal_name: str, where: str = ""):
        super().__init__(signal_name)
        self.signal_name, self.where = signal_name, where


def _handler(signum, frame) -> None:
    name = signal.Signals(signum).name
    if _state["armed"] and _state["requested"] is None:
        _state["requested"], _state["at"] = name, time.monotonic()  # the loop stops at the end of this step
        return
    if _state["armed"] and time.monotonic() - _state["at"] < REPEAT_S:
        return  # the same stop, asked again (SIGTERM to the job's processes, then forwarded by a parent)
    raise Interrupted(name)


def install() -> None:
    """Handle SIGTERM and SIGINT in this process (main thread only; elsewhere the defaults stay)."""
    if threading.current_thread() is threading.main_thread():
        for sig in HANDLED:
            signal.signal(sig, _handler)


def requested() -> str | None:
    """The signal whose stop is pending (None when none is)."""
    return _state["requested"]


@contextlib.contextmanager
def deferred():
    """While inside, the first signal waits for the loop to call ``requested`` (a training loop's region)."""
    _state["armed"] += 1
    try:
        yield
    finally:
        _state["armed"] -= 1


def clear() -> None:
    _state["requested"], _state["at"] = None, 0.0


__all__ = ["HANDLED", "Interrupted", "clear", "deferred", "install", "requested"]
