"""Exit codes: what a script calling ``keel`` learns without reading its output.

  0  completed or rolled back (or the command did what it was asked: a listing, a recorded decision, a
     cancellation)
  1  the run failed
  2  usage or configuration error: a bad argument, an agent file that does not load, a decision that does
     not fit the run, a store that cannot be opened
  3  the run is paused: a person must act (``keel resolve``, ``keel approve``/``keel reject``)
  4  the run was cancelled, or a kill switch on its agent refused to start it
  5  the run is busy (another live process drives it) or no run has that id
 70  an internal error (a bug in agentkeel: KEEL_DEBUG=1 shows the traceback)
130  interrupted (Ctrl-C); the run can be resumed
"""

from __future__ import annotations

from agentkeel.errors import KeelError, Killed, LeaseLost, RunBusy, RunNotFound

OK = 0
FAILED = 1
USAGE = 2
PAUSED = 3
CANCELLED = 4
BUSY_OR_NOT_FOUND = 5
INTERNAL = 70
INTERRUPTED = 130

EPILOG = """Exit codes:
  0  completed or rolled back, or the command did what it was asked
  1  the run failed
  2  usage or configuration error
  3  paused: a person must act (keel resolve, keel approve/reject)
  4  cancelled, or a kill switch refused to start the run
  5  busy (another process drives the run), or no such run
  70 internal error (KEEL_DEBUG=1 shows why); 130 interrupted

Store: --store URL, else KEEL_STORE, else sqlite:///.keel/keel.db"""

_BY_STATUS = {"completed": OK, "rolled_back": OK, "failed": FAILED, "paused": PAUSED, "cancelled": CANCELLED}


class UsageProblem(KeelError):
    """Something wrong with what was typed: the message says what, and what to write instead."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


def for_status(status: str) -> int:
    """The exit code of a command whose outcome is a run in this status."""
    return _BY_STATUS.get(status, BUSY_OR_NOT_FOUND)  # "running": another process drives it


def for_error(error: KeelError) -> int:
    if isinstance(error, UsageProblem):
        return error.code
    if isinstance(error, (RunBusy, RunNotFound, LeaseLost)):
        return BUSY_OR_NOT_FOUND
    if isinstance(error, Killed):
        return CANCELLED
    return USAGE
