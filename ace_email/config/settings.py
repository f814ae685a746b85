"""The whole configuration: a TOML file (with ACE_EMAIL_* environment overrides), validated
when it loads, with every fault named by file and key; and the snapshots workflows get."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Self

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ace_email.analysis.keywords import Category, category_problems
from ace_email.analysis.language import DEFAULT_LANGUAGES
from ace_email.compose.templates import BUILTIN_TEMPLATES, TemplateError, TemplateSettings
from ace_email.config.accounts import AccountSettings
from ace_email.config.base import ConfigError, Section
from ace_email.config.desk import DeskSettings, SupervisorSettings
from ace_email.config.observability import MetricsSettings, TracingSettings
from ace_email.config.queues import AgentSettings, QueueSettings, RoutingSettings
from ace_email.config.statistics import StatisticsSettings
from ace_email.config.temporal import IntakeSettings, TemporalSettings
from ace_email.contracts.base import Channel
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.queues import AgentInput, AgentPolicy, QueuePolicy
from ace_email.decisions.extraction import pattern_problems
from ace_email.decisions.rules import (
    NO_TEMPLATE,
    rule_problems,
    unknown,
)

DEFAULT_CONFIG_PATH = Path("ace-email.toml")
CONFIG_ENV_VAR = "ACE_EMAIL_CONFIG"


class AnalysisSettings(Section):
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(
        default=list(DEFAULT_LANGUAGES),
        min_length=1,
        description="ISO 639-1 codes the language detector chooses among",
    )


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="ACE_EMAIL_",
        env_nested_delimiter="__",
        extra="forbid",
        toml_file=None,
    )

    temporal: TemporalSettings = TemporalSettings()
    queues: list[QueueSettings] = []
    routing: RoutingSettings = RoutingSettings()
    intake: IntakeSettings = IntakeSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    categories: list[Category] = Field(
        default=[], description="keyword categories, matched on every email in this order"
    )
    templates: dict[str, TemplateSettings] = {}
    accounts: list[AccountSettings] = []
    agents: list[AgentSettings] = []
    supervisors: list[SupervisorSettings] = []
    desk: DeskSettings = DeskSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    statistics: StatisticsSettings = StatisticsSettings()

    @field_validator("queues")
    @classmethod
    def _unique_queue_names(cls, queues: list[QueueSettings]) -> list[QueueSettings]:
        _reject_duplicates("name", [q.name for q in queues])
        return queues

    @field_validator("templates")
    @classmethod
    def _template_names(cls, templates: dict[str, TemplateSettings]) -> dict[str, TemplateSettings]:
        if NO_TEMPLATE in templates:
            raise ValueError(f"{NO_TEMPLATE!r} is reserved: it means no automatic reply")
        return templates

    @field_validator("accounts")
    @classmethod
    def _unique_account_names(cls, accounts: list[AccountSettings]) -> list[AccountSettings]:
        _reject_duplicates("name", [a.name for a in accounts])
        return accounts

    @field_validator("agents")
    @classmethod
    def _unique_agent_ids(cls, agents: list[AgentSettings]) -> list[AgentSettings]:
        _reject_duplicates("id", [a.id for a in agents])
        return agents

    @model_validator(mode="after")
    def _supervisors_are_not_agents(self) -> Self:
        agents = {a.id for a in self.agents}
        _reject_duplicates("supervisors id", [s.id for s in self.supervisors])
        for supervisor in self.supervisors:
            if supervisor.id in agents:
                raise ValueError(
                    f"supervisors: {supervisor.id!r} is also an agent's id; a desk user name "
                    "must be one person's"
                )
        return self

    @model_validator(mode="after")
    def _names_are_known(self) -> Self:
        queues = self.queue_names()
        templates = self.template_names()
        categories = [c.name for c in self.categories]
        problems = category_problems(self.categories, self.analysis.languages)
        for index, account in enumerate(self.accounts):
            where = f"accounts[{index}] ({account.name})"
            problems += [f"{where}.{p}" for p in pattern_problems(account.extract, "extract")]
            template = account.auto_reply_template
            if template != NO_TEMPLATE and template not in templates:
                problems.append(
                    f"{where}.auto_reply_template: {unknown('template', template, templates)}"
                )
            closed = account.closed_template
            if closed is not None and closed not in templates:
                problems.append(
                    f"{where}.closed_template: {unknown('template', closed, templates)}"
                )
            if closed is not None and not account.opening_hours:
                problems.append(f"{where}.closed_template: the account has no opening_hours")
            problems += [
                f"{where}.{problem}"
                for problem in rule_problems(
                    account.rules,
                    queues=queues,
                    templates=templates,
                    office_hours=account.office_hours is not None,
                    data_names=list(account.extract),
                    categories=categories,
                )
            ]
            problems += _flood_problems(account, where, queues)
        problems += self._routing_problems(queues)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _routing_problems(self, queues: list[str]) -> list[str]:
        """Queues and agents that name what does not exist, overflow in a circle, or would
        leave a built-in reply without a return address."""
        problems: list[str] = []
        accounts = [a.name for a in self.accounts]
        for index, queue in enumerate(self.queues):
            where = f"queues[{index}] ({queue.name})"
            if queue.overflow_to is not None and queue.overflow_to not in queues:
                problems.append(
                    f"{where}.overflow_to: {unknown('queue', queue.overflow_to, queues)}"
                )
            if queue.account is not None and queue.account not in accounts:
                problems.append(f"{where}.account: {unknown('account', queue.account, accounts)}")
            elif (
                set(queue.channels) - {Channel.EMAIL} and self.account_for_queue(queue.name) is None
            ):
                problems.append(f"{where}.account: no account sends this queue's replies; name one")
            if circle := self._overflow_circle(queue.name):
                problems.append(f"{where}.overflow_to: overflow goes round: {' -> '.join(circle)}")
        for index, agent in enumerate(self.agents):
            problems += [
                f"agents[{index}] ({agent.id}).queues: {unknown('queue', name, queues)}"
                for name in agent.queues
                if name not in queues
            ]
        for index, account in enumerate(self.accounts):
            if account.return_address is None and (why := self._needs_return_address(account)):
                problems.append(
                    f"accounts[{index}] ({account.name}).return_address: required, because {why}; "
                    "replies from the built-in interface leave from it"
                )
        return problems

    def _overflow_circle(self, start: str) -> list[str]:
        seen = [start]
        current = self.queue_settings(start).overflow_to
        while current is not None:
            if current == start:
                return [*seen, current]
            if current in seen:
                return []
            seen.append(current)
            current = self.queue_settings(current).overflow_to
        return []

    def _needs_return_address(self, account: AccountSettings) -> str | None:
        fed = self.account_queues(account)
        fed += [
            q for q in self.queue_names() if q not in fed and self.account_for_queue(q) is account
        ]
        for agent in self.agents:
            served = [q for q in (agent.queues or fed) if q in fed]
            if agent.email is None and served:
                return f"agent {agent.id!r} works in the built-in interface on queue {served[0]!r}"
        for queue_name in fed:
            queue = self.queue_settings(queue_name)
            other = [c.value for c in queue.channels if c is not Channel.EMAIL]
            if other and self.account_for_queue(queue_name) is account:
                return f"queue {queue_name!r} takes {other[0]} contacts"
        return None

    def account_queues(self, account: AccountSettings) -> list[str]:
        """The queues an account's contacts can wait in: its own, its rules', and the queues
        it answers for."""
        names = [account.queue, *(r.then.queue for r in account.rules if r.then.queue)]
        names += [q.name for q in self.queues if q.account == account.name]
        return list(dict.fromkeys(names))

    def account_for_queue(self, queue_name: str) -> AccountSettings | None:
        """The account whose return address and mail store serve a queue's work items."""
        named = self.queue_settings(queue_name).account
        if named is not None:
            return next((a for a in self.accounts if a.name == named), None)
        for account in self.accounts:
            if account.queue == queue_name:
                return account
        for account in self.accounts:
            if queue_name in self.account_queues(account):
                return account
        return self.accounts[0] if len(self.accounts) == 1 else None

    def queue_settings(self, name: str) -> QueueSettings:
        """A queue's settings; a queue known only as an account's default has the defaults."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        return QueueSettings(name=name)

    def queue_policy(self, name: str) -> QueuePolicy:
        """A queue's routing rules, with its own opening hours or its account's."""
        account = self.account_for_queue(name)
        return self.queue_settings(name).policy(account.hours if account else None)

    def agent_policy(self, agent: AgentSettings) -> AgentPolicy:
        return AgentPolicy(
            id=agent.id,
            name=agent.name,
            email=agent.email,
            capacity=agent.capacity,
            channel_capacity=agent.channel_capacity,
            skills=agent.skills,
            queues=agent.queues or self.queue_names(),
        )

    def agent_input(self, agent: AgentSettings) -> AgentInput:
        """How an agent's workflow begins: offline, holding nothing."""
        return AgentInput(
            policy=self.agent_policy(agent),
            reconcile_every_seconds=self.routing.reconcile_minutes * 60,
        )

    def agents_serving(self, queue_name: str) -> list[AgentSettings]:
        return [a for a in self.agents if not a.queues or queue_name in a.queues]

    def queue_names(self) -> list[str]:
        """Every queue rules may name: the configured queues and each account's default."""
        return sorted({q.name for q in self.queues} | {a.queue for a in self.accounts})

    def template_names(self) -> list[str]:
        """Every template an account or rule may name, besides "none"."""
        return sorted(set(self.templates) | BUILTIN_TEMPLATES)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def account(self, name: str) -> AccountSettings:
        for account in self.accounts:
            if account.name == name:
                return account
        raise ConfigError(f"no account named {name!r} in the configuration")

    def agent(self, agent_id: str) -> AgentSettings:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        known = ", ".join(a.id for a in self.agents) or "none configured"
        raise ConfigError(f"unknown agent {agent_id!r} (known: {known})")

    def require_logins(self) -> None:
        """Every password a worker logs in with, read now (an unset environment variable,
        say): a worker stops at its start, with the key named, not at its first login."""
        problems = []
        for n, account in enumerate(self.accounts):
            for protocol, credentials in (("imap", account.imap), ("smtp", account.smtp)):
                try:
                    credentials.secret()
                except ConfigError as exc:
                    problems.append(f"accounts[{n}].{protocol}.{exc}")
        if problems:
            raise ConfigError("\n".join(problems))

    def own_addresses(self) -> list[str]:
        """Every address of ours: automatic replies never go to these."""
        addresses = {a.address.lower() for a in self.accounts}
        addresses |= {a.reply_from.lower() for a in self.accounts}
        addresses |= {a.email.lower() for a in self.agents if a.email}
        return sorted(addresses)

    def policy(self, account: AccountSettings) -> AccountPolicy:
        """The non-secret view of an account that its workflows act on."""
        imap = account.imap
        return AccountPolicy(
            name=account.name,
            address=account.address,
            return_address=account.reply_from,
            queue=account.queue,
            auto_reply=account.auto_reply,
            poll_interval_seconds=imap.poll_interval_seconds,
            idle=imap.idle,
            inbox_folder=imap.folder,
            processing_folder=imap.processing_folder,
            archive_folder=imap.archive_folder,
            quarantine_folder=imap.quarantine_folder,
            sent_folder=imap.sent_folder,
            workitem_folder=imap.workitem_folder,
            outbox_folder=imap.outbox_folder,
            max_message_bytes=int(account.max_message_mb * 1024 * 1024),
            imap_timeout_seconds=imap.timeout_seconds,
            smtp_timeout_seconds=account.smtp.timeout_seconds,
            own_addresses=self.own_addresses(),
            auto_reply_period_hours=account.auto_reply_period_hours,
            auto_reply_cap_per_hour=account.auto_reply_cap_per_hour,
            follow_up_days=account.follow_up_days,
            bounce_suppress_days=account.bounce_suppress_days,
            max_waiting=account.max_waiting,
            max_per_sender_per_hour=account.max_per_sender_per_hour,
            max_per_domain_per_hour=account.max_per_domain_per_hour,
            flood_queue=account.flood_queue,
        )


def _flood_problems(account: AccountSettings, where: str, queues: list[str]) -> list[str]:
    """A flood limit needs a flood queue, and the flood queue must exist."""
    limited = account.max_per_sender_per_hour or account.max_per_domain_per_hour
    if account.flood_queue is None:
        if limited:
            return [
                f"{where}.flood_queue: max_per_sender_per_hour or max_per_domain_per_hour "
                "needs a flood_queue, the queue a flood goes to"
            ]
        return []
    if account.flood_queue not in queues:
        return [f"{where}.flood_queue: {unknown('queue', account.flood_queue, queues)}"]
    return []


def _reject_duplicates(field: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{field} {value!r} appears twice; it must be unique")
        seen.add(value)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate the configuration, or raise ConfigError naming file, key and fault."""
    import tomllib

    chosen = config_path(path)
    if not chosen.is_file():
        raise ConfigError(f"{chosen}: configuration file not found")
    try:
        with chosen.open("rb") as handle:
            tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{chosen}: not valid TOML: {exc}") from exc
    from_file = type(
        "Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": chosen}}
    )
    try:
        settings: Settings = from_file()
    except ValidationError as exc:
        raise ConfigError(_describe(chosen, exc)) from None
    try:
        templates = {
            name: template.resolve_files(chosen.parent)
            for name, template in settings.templates.items()
        }
    except TemplateError as exc:
        raise ConfigError(f"{chosen}: templates: {exc}") from None
    return settings.model_copy(update={"templates": templates})


def _describe(path: Path, exc: ValidationError) -> str:
    """One line per fault: file, dotted key, what is wrong. Never echoes a secret's value."""
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            problems.append(f"{_dotted(error['loc'])}: {message}")
        else:
            problems += message.splitlines()
    lines = [f"{path}: invalid configuration ({len(problems)} problem(s))"]
    lines += [f"  {problem}" for problem in problems]
    return "\n".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(item)
    return ".".join(parts)
