"""Configuration: a TOML file (the "Accounts tab"), overridable by environment variables.

The file is named by `--config PATH`, else `ACE_EMAIL_CONFIG`, else `./ace-email.toml`.
Any key can be overridden by an environment variable `ACE_EMAIL_<SECTION>__<KEY>`, e.g.
`ACE_EMAIL_TEMPORAL__ADDRESS=temporal.internal:7233`.

Secrets (passwords) are `SecretStr` and are resolved only inside activities, on the worker;
they never travel in workflow inputs.
"""

from __future__ import annotations

import os
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
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

from ace_email.analysis.language import DEFAULT_LANGUAGES
from ace_email.codec import KEY_ID_PATTERN, KeyringError, parse_keyring
from ace_email.compose.auto_reply import ReplySender
from ace_email.compose.templates import BUILTIN_TEMPLATES, TemplateError, TemplateSettings
from ace_email.config_types import ReadableFile
from ace_email.contracts.base import Channel
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Routing
from ace_email.contracts.queues import AgentInput, AgentPolicy, QueuePolicy
from ace_email.decisions.rules import (
    NO_TEMPLATE,
    Calendar,
    MessageFacts,
    OfficeHours,
    RoutingDefaults,
    Rule,
    TimeZoneName,
    evaluate,
    rule_problems,
    template_choice,
    unknown,
)
from ace_email.oauth2 import OAuth2Settings, is_loopback

DEFAULT_CONFIG_PATH = Path("ace-email.toml")
CONFIG_ENV_VAR = "ACE_EMAIL_CONFIG"


def _email_address(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an email address")
    return value


EmailAddress = Annotated[str, AfterValidator(_email_address)]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the fault."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Security(StrEnum):
    SSL = "ssl"
    STARTTLS = "starttls"
    NONE = "none"


class AuthMethod(StrEnum):
    PASSWORD = "password"
    XOAUTH2 = "xoauth2"


class Credentials(Section):
    """A username and how it logs in (one source of its password, or OAuth2), and TLS."""

    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: ReadableFile | None = None
    auth: AuthMethod = AuthMethod.PASSWORD
    oauth2: OAuth2Settings | None = None
    ca_file: Path | None = Field(
        default=None, description="PEM bundle of CAs trusted besides the system's"
    )
    tls_verify: bool = Field(
        default=True,
        description="false: accept any certificate (loopback, or with allow_plaintext)",
    )
    allow_plaintext: bool = Field(
        default=False,
        description="allow a login over security = none or tls_verify = false towards a host "
        "that is not loopback",
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        sources = [
            name
            for name in ("password", "password_env", "password_file")
            if getattr(self, name) is not None
        ]
        if len(sources) > 1:
            raise ValueError(
                f"give only one of password, password_env, password_file, not {sources}"
            )
        if self.auth is AuthMethod.XOAUTH2:
            if sources:
                raise ValueError(f"auth = xoauth2 takes no password, but {sources[0]} is set")
            if self.oauth2 is None:
                raise ValueError("auth = xoauth2 needs an oauth2 table")
            if not self.username:
                raise ValueError("auth = xoauth2 needs username (the mailbox to log in to)")
        elif self.oauth2 is not None:
            raise ValueError('oauth2 is only used with auth = "xoauth2"')
        if self.ca_file is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ValueError(f"ca_file: cannot load {self.ca_file}: {reason}") from None
        return self

    @property
    def logs_in(self) -> bool:
        return bool(self.username)

    def _transport_problem(self, host: str, security: Security) -> str | None:
        """Why logging in to `host` this way would expose the credentials, if it would."""
        if not self.logs_in or self.allow_plaintext or is_loopback(host):
            return None
        if security is Security.NONE:
            return (
                f"security = 'none' towards {host} would send the credentials unencrypted; "
                "use ssl or starttls, or set allow_plaintext = true"
            )
        if not self.tls_verify:
            return (
                f"tls_verify = false towards {host} would give the credentials to anyone in "
                "the path; trust a private CA with ca_file, or set allow_plaintext = true"
            )
        return None

    def tls_context(self) -> ssl.SSLContext:
        """The system's trust store plus `ca_file`; hostname and certificate checked unless
        `tls_verify = false`."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=self.ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def secret(self) -> str | None:
        """The password, read now from wherever the config says it lives."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"password_env: environment variable {self.password_env} is not set"
                )
            return value
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"password_file: cannot read {self.password_file}: {exc.strerror}"
                ) from exc
        return None


class ImapSettings(Credentials):
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    security: Security = Security.SSL
    folder: str = "INBOX"
    poll_interval_seconds: float = Field(default=30.0, gt=0, le=86400)
    processing_folder: str = "Processing"
    archive_folder: str = "Archive"
    quarantine_folder: str = "Quarantine"
    sent_folder: str = "Sent"
    workitem_folder: str = Field(
        default="WorkItems", description="the documents of work items and social contacts"
    )
    outbox_folder: str = Field(
        default="Outbox", description="replies written in the built-in interface, until sent"
    )
    timeout_seconds: float = Field(default=30.0, gt=0)
    sessions_per_worker: int = Field(default=4, ge=1, le=32)

    @model_validator(mode="after")
    def _needs_login(self) -> Self:
        if not self.username:
            raise ValueError("username is required for IMAP")
        if (
            self.auth is AuthMethod.PASSWORD
            and self.password is None
            and self.password_env is None
            and self.password_file is None
        ):
            raise ValueError("one of password, password_env, password_file is required for IMAP")
        if problem := self._transport_problem(self.host, self.security):
            raise ValueError(problem)
        return self


class SmtpSettings(Credentials):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Security = Security.STARTTLS
    timeout_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _safe_login(self) -> Self:
        if problem := self._transport_problem(self.host, self.security):
            raise ValueError(problem)
        return self


class AccountSettings(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    address: EmailAddress
    return_address: EmailAddress | None = None
    queue: str = Field(default="default", min_length=1)
    priority: int = 0
    skills: list[Annotated[str, Field(min_length=1)]] = []
    auto_reply: bool = True
    auto_reply_template: str = Field(
        default="default", min_length=1, description=f'"{NO_TEMPLATE}": no automatic reply'
    )
    timezone: TimeZoneName = "UTC"
    office_hours: OfficeHours | None = None
    rules: list[Rule] = []
    response_time: str = Field(
        default="", max_length=200, description='told in automatic replies, e.g. "one working day"'
    )
    auto_reply_period_hours: float = Field(
        default=24.0,
        ge=0,
        description="at most one automatic reply per sender in this period; 0: no such limit",
    )
    auto_reply_cap_per_hour: int = Field(
        default=100, ge=0, description="at most this many automatic replies per hour"
    )
    follow_up_days: float = Field(
        default=30.0, ge=0, description="a contact delivered to an agent takes follow-ups this long"
    )
    max_message_mb: float = Field(default=40.0, gt=0)
    imap: ImapSettings
    smtp: SmtpSettings

    def reply_sender(self) -> ReplySender:
        """Whom the account's automatic replies speak for, as templates name it."""
        office_hours = self.office_hours.describe(self.timezone) if self.office_hours else ""
        return ReplySender(
            account=self.name,
            address=self.reply_from,
            office_hours=office_hours,
            response_time=self.response_time,
        )

    def endpoints(self) -> dict[str, str]:
        """Where and how a worker connects for this account, without any secret: what a
        worker reads at its start, and only a restart changes."""
        found: dict[str, str] = {}
        for protocol, credentials in (("imap", self.imap), ("smtp", self.smtp)):
            settings = credentials.model_dump(
                include={"host", "port", "security", "username", "auth", "tls_verify", "ca_file"}
            )
            found |= {
                f"{protocol}.{k}": str(v) for k, v in sorted(settings.items()) if v is not None
            }
        return found

    @property
    def reply_from(self) -> str:
        return self.return_address or self.address

    @property
    def calendar(self) -> Calendar:
        return Calendar(zone=ZoneInfo(self.timezone), office_hours=self.office_hours)

    @property
    def routing_defaults(self) -> RoutingDefaults:
        return RoutingDefaults(
            queue=self.queue,
            priority=self.priority,
            skills=tuple(self.skills),
            auto_reply_template=template_choice(self.auto_reply_template),
        )

    def routing(self, facts: MessageFacts) -> Routing:
        """Where this account's rules send one email.

        With `auto_reply = false` no email gets an automatic reply, whatever the rules say.
        """
        routing = evaluate(self.rules, self.routing_defaults, facts, self.calendar)
        if not self.auto_reply and routing.auto_reply_template is not None:
            return routing.model_copy(update={"auto_reply_template": None})
        return routing


class QueueSettings(Section):
    """A queue: where contacts wait for an agent, with its escalation and overflow."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\s\"'\\]+$")
    description: str = ""
    channels: list[Channel] = Field(
        default=[Channel.EMAIL], min_length=1, description="what may be created in this queue"
    )
    account: str | None = Field(
        default=None,
        description="whose return address and mail store serve its work items and social "
        "contacts; default: the account whose queue this is, or the only account",
    )
    escalate_after_minutes: float | None = Field(default=None, gt=0)
    escalate_step: int = Field(default=1, ge=1)
    escalate_max: int | None = None
    overflow_after_minutes: float | None = Field(default=None, gt=0)
    overflow_to: str | None = None

    @model_validator(mode="after")
    def _overflow_whole(self) -> Self:
        if (self.overflow_after_minutes is None) != (self.overflow_to is None):
            raise ValueError("give both overflow_after_minutes and overflow_to, or neither")
        if self.overflow_to == self.name:
            raise ValueError(f"overflow_to: queue {self.name!r} cannot overflow to itself")
        return self

    def policy(self) -> QueuePolicy:
        minutes = 60.0
        return QueuePolicy(
            name=self.name,
            escalate_after_seconds=(
                self.escalate_after_minutes * minutes if self.escalate_after_minutes else None
            ),
            escalate_step=self.escalate_step,
            escalate_max=self.escalate_max,
            overflow_after_seconds=(
                self.overflow_after_minutes * minutes if self.overflow_after_minutes else None
            ),
            overflow_to=self.overflow_to,
        )


class AgentSettings(Section):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
    name: str = ""
    email: EmailAddress | None = None
    capacity: int = Field(default=1, ge=1, le=1000, description="contacts at once")
    channel_capacity: dict[Channel, Annotated[int, Field(ge=0)]] = Field(
        default={}, description="at most this many contacts of a channel at once"
    )
    skills: list[Annotated[str, Field(min_length=1)]] = []
    queues: list[Annotated[str, Field(min_length=1)]] = Field(
        default=[], description="the queues the agent serves; empty: every queue"
    )

    @model_validator(mode="after")
    def _channel_limits_within_capacity(self) -> Self:
        for channel, limit in self.channel_capacity.items():
            if limit > self.capacity:
                raise ValueError(
                    f"channel_capacity.{channel.value}: {limit} is more than capacity "
                    f"{self.capacity}"
                )
        return self


class RoutingSettings(Section):
    """How contacts reach agents: offers, personal waiting lists, bookkeeping."""

    offer_timeout_seconds: float = Field(
        default=60.0, gt=0, description="a built-in agent accepts an offer within this time"
    )
    personal_wait_minutes: float = Field(
        default=10.0, gt=0, description="a contact waits this long for one agent, then queues"
    )
    reconcile_minutes: float = Field(
        default=5.0, gt=0, description="an agent checks this often that its contacts are open"
    )


class IntakeSettings(Section):
    """The HTTP endpoint that creates work items and social contacts."""

    host: str = "127.0.0.1"
    port: int = Field(default=8082, ge=1, le=65535)
    token_env: str | None = None
    token_file: ReadableFile | None = None
    max_body_kb: int = Field(default=256, ge=1, le=10240)

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("give at most one of token_env, token_file")
        return self

    def token(self) -> str:
        """The bearer token every caller must present; the endpoint does not run without one."""
        if self.token_env is None and self.token_file is None:
            raise ConfigError("intake: set token_env or token_file; the endpoint needs a token")
        token = _read_secret_source("intake.token", self.token_env, self.token_file).strip()
        if not token:
            raise ConfigError("intake.token: the token is empty")
        return token


def _read_secret_source(field: str, env: str | None, file: Path | None) -> str:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"{field}_env: environment variable {env} is not set")
        return value
    assert file is not None
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{field}_file: cannot read {file}: {exc.strerror}") from exc


class EncryptionSettings(Section):
    """AES-256-GCM encryption of every workflow payload (see ace_email/codec.py).

    The keyring (from `key_env` or `key_file`) holds `ID:KEY` entries, or one bare key that
    is `key_id`'s. `key_id` names the key new payloads are encrypted with; the others decrypt
    payloads written before a rotation.
    """

    key_id: str = Field(pattern=KEY_ID_PATTERN)
    key_env: str | None = None
    key_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.key_env is None) == (self.key_file is None):
            raise ValueError("give exactly one of key_env, key_file")
        return self

    def keys(self) -> dict[str, bytes]:
        """The keyring, read now; a ConfigError names the field and the fault, never a key."""
        where = "temporal.encryption.key"
        text = _read_secret_source(where, self.key_env, self.key_file)
        source = f"{where}_env ({self.key_env})" if self.key_env else f"{where}_file"
        try:
            keys = parse_keyring(text, self.key_id)
        except KeyringError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if self.key_id not in keys:
            raise ConfigError(
                f"temporal.encryption.key_id: {self.key_id!r} is not in {source} "
                f"(it holds {', '.join(sorted(keys))})"
            )
        return keys


class CodecServerSettings(Section):
    """The HTTP codec server that lets the Web UI show decrypted payloads."""

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=1, le=65535)
    cors_origins: list[str] = Field(
        default=["http://localhost:8233", "http://127.0.0.1:8233"],
        description="Web UI origins allowed to call the codec server",
    )
    token_env: str | None = None
    token_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        if self.token_env is not None and self.token_file is not None:
            raise ValueError("give at most one of token_env, token_file")
        return self

    def token(self) -> str | None:
        """The bearer token callers must present, if one is configured."""
        if self.token_env is None and self.token_file is None:
            return None
        token = _read_secret_source(
            "temporal.codec_server.token", self.token_env, self.token_file
        ).strip()
        if not token:
            raise ConfigError("temporal.codec_server.token: the token is empty")
        return token


class TemporalSettings(Section):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "ace-email"
    encryption: EncryptionSettings | None = None
    codec_server: CodecServerSettings = CodecServerSettings()


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
    templates: dict[str, TemplateSettings] = {}
    accounts: list[AccountSettings] = []
    agents: list[AgentSettings] = []

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
    def _names_are_known(self) -> Self:
        queues = self.queue_names()
        templates = self.template_names()
        problems: list[str] = []
        for index, account in enumerate(self.accounts):
            where = f"accounts[{index}] ({account.name})"
            template = account.auto_reply_template
            if template != NO_TEMPLATE and template not in templates:
                problems.append(
                    f"{where}.auto_reply_template: {unknown('template', template, templates)}"
                )
            problems += [
                f"{where}.{problem}"
                for problem in rule_problems(
                    account.rules,
                    queues=queues,
                    templates=templates,
                    office_hours=account.office_hours is not None,
                )
            ]
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
        return self.queue_settings(name).policy()

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
        )


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
