"""How every process that talks to Temporal ends: with its own exit status, never a signal.

The Temporal client's core keeps native threads that may call into Python while the
interpreter finalizes; a short-lived process then dies of SIGABRT ("PyGILState_Release: thread
state ... must be current") or SIGSEGV after its work is done (temporalio/sdk-python#300).
So these processes run their `main`, flush what they wrote, and leave with `os._exit`: the
finalization they skip has nothing left to do for them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from contextlib import suppress
from typing import NoReturn

INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def run_then_exit(main: Callable[[], int | None]) -> NoReturn:
    """Run `main` and end the process with its status: its return value, the code of a
    `SystemExit` it raises (a text is printed to stderr and gives 1, as Python does), 130 for
    Ctrl-C, 1 for an unexpected error (its traceback printed)."""
    try:
        code = _status(main())
    except SystemExit as exc:
        code = _exit_status(exc)
    except KeyboardInterrupt:
        code = INTERRUPTED
    except BaseException:
        traceback.print_exc()
        code = 1
    exit_now(code)


def interrupt_on_stop_signals() -> None:
    """SIGTERM, and SIGINT even where it was ignored at start (a job started in the background
    with `&`), raise KeyboardInterrupt in the main thread: a service stops as on Ctrl-C."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.default_int_handler)


def exit_now(code: int) -> NoReturn:
    """Flush the logs and standard streams, then end the process without finalizing."""
    with suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(code)


def _status(value: int | None) -> int:
    return 0 if value is None else value


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return _status(exc.code)
    with suppress(Exception):
        print(exc.code, file=sys.stderr)
    return 1
