"""One mapping of mail faults to activity errors, for every activity that talks to a mail
server: a MailError keeps its kind and whether it is permanent, a bad setting is a permanent
ConfigError, a broken connection is a retryable ImapConnectionError. Retry policies know the
faults by these types. A benign fault is logged by the worker at DEBUG only (its workflow
reports it). Every fault is counted in `ace_mail_errors_total` (per attempt: a retried fault
counts again, as each attempt did fail)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from ace_email.config.base import ConfigError
from ace_email.contracts import metrics
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


def count_fault(error: ApplicationError, arguments: tuple[Any, ...]) -> None:
    """One more failed attempt of this activity's account, by protocol and kind."""
    if not activity.in_activity():
        return
    kind = error.type or "MailError"
    lowered = kind.lower()
    protocol = next(
        (name for prefixes, name in _PROTOCOLS if lowered.startswith(prefixes)), "other"
    )
    labels = {"account": _account(arguments), "protocol": protocol, "kind": kind}
    meter = activity.metric_meter()
    meter.create_counter(metrics.MAIL_ERRORS.name, metrics.MAIL_ERRORS.description).add(1, labels)


_PROTOCOLS = ((("smtp",), "smtp"), (("imap", "message"), "imap"))


def _account(arguments: tuple[Any, ...]) -> str:
    """The account an activity works for: its request's `policy.name` or `account`."""
    for argument in arguments:
        policy = getattr(argument, "policy", None)
        name = getattr(policy, "name", None) or getattr(argument, "account", None)
        if isinstance(name, str) and name:
            return name
    return "unknown"


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
                    error = activity_error(fault, benign=benign)
                    count_fault(error, args)
                    raise error from None

            return cast(Callable[P, R], run_async)

        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except FAULTS as fault:
                error = activity_error(fault, benign=benign)
                count_fault(error, args)
                raise error from None

        return run

    return decorate
