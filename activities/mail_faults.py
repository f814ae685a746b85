"""One mapping of mail faults to activity errors, for every activity that talks to a mail
server: a MailError keeps its kind and whether it is permanent, a bad setting is a permanent
ConfigError, a broken connection is a retryable ImapConnectionError. Retry policies know the
faults by these types. A benign fault is logged by the worker at DEBUG only (its workflow
reports it)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from ace_email.config.base import ConfigError
from ace_email.mail.errors import MailError

P = ParamSpec("P")
R = TypeVar("R")
FAULTS = (MailError, ConfigError, OSError, EOFError)


def activity_error(fault: BaseException, *, benign: bool = False) -> ApplicationError:
    """The activity error for a fault of a mail server, its connection or its configuration."""
    if isinstance(fault, ConfigError):
        kind, message, permanent = "ConfigError", str(fault), True
    elif isinstance(fault, MailError):
        kind, message, permanent = fault.kind, str(fault), fault.permanent
    else:
        kind, message, permanent = "ImapConnectionError", f"{type(fault).__name__}: {fault}", False
    category = ApplicationErrorCategory.BENIGN if benign else ApplicationErrorCategory.UNSPECIFIED
    return ApplicationError(message, type=kind, non_retryable=permanent, category=category)


def mail_faults(*, benign: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an activity (sync or async; under @activity.defn) so its mail faults leave it
    as typed activity errors."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(function):
            coroutine = cast(Callable[P, Awaitable[Any]], function)

            @functools.wraps(function)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    return await coroutine(*args, **kwargs)
                except FAULTS as fault:
                    raise activity_error(fault, benign=benign) from None

            return cast(Callable[P, R], run_async)

        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except FAULTS as fault:
                raise activity_error(fault, benign=benign) from None

        return run

    return decorate
