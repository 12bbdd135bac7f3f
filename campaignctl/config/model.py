"""The campaign file's model: pydantic classes for every table, with the checks one key can make.

Rules that span keys live in `validate`; reading the file in `load`. Provider-specific channel
models are in `campaignctl/channels/providers/`; `use_providers` joins them into `Config`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    field_validator,
)

from campaignctl.timespec import (
    PerSpan,
    Window,
    parse_days,
    parse_duration,
    parse_per_span,
    parse_window,
)

DEFAULT_CONFIG = "campaigns.toml"
CONFIG_ENV = "CAMPAIGNCTL_CONFIG"
#: A database URL (or SQLite file) that overrides `settings.database` for every command.
DATABASE_ENV = "CAMPAIGNCTL_DATABASE"
#: The URL schemes `settings.database` may use (a bare path is SQLite).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
ChannelKind = Literal["email", "sms", "whatsapp"]
StopReason = Literal["reply", "optout", "bounce"]
STOP_REASONS: tuple[StopReason, ...] = ("reply", "optout", "bounce")
CHANNEL_KINDS: tuple[str, ...] = ("email", "sms", "whatsapp")


def _to_duration(v: Any) -> Any:
    if isinstance(v, timedelta):
        return v
    if isinstance(v, str):
        return parse_duration(v)
    raise ValueError("expected a duration string such as '20s', '3d' or '1h30m'")


def _to_window(v: Any) -> Any:
    if isinstance(v, Window):
        return v
    if isinstance(v, str):
        return parse_window(v)
    raise ValueError("expected a window string such as '08:00-18:00'")


def _to_days(v: Any) -> Any:
    if isinstance(v, frozenset):
        return v
    if isinstance(v, str):
        return parse_days(v)
    raise ValueError("expected days such as 'mon-fri', 'sat,sun' or '*'")


def _to_per_span(v: Any) -> Any:
    if isinstance(v, PerSpan):
        return v
    if isinstance(v, str):
        return parse_per_span(v)
    raise ValueError("expected a rate string such as '2/1d' (messages per duration)")


def _to_timezone(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError("expected an IANA time zone name such as 'Asia/Manila'")
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {v!r}: use an IANA name such as 'Asia/Manila'"
        ) from None
    return v


#: `per_second` bounds: slower than MIN the gap would outgrow a day's window (pace that with
#: `min_interval`); faster than MAX no provider accepts, and the float stays a real number.
MIN_PER_SECOND = 0.001
MAX_PER_SECOND = 1000.0
MAX_WEIGHT = 1_000_000.0


def _per_second(v: float) -> float:
    if not math.isfinite(v) or not MIN_PER_SECOND <= v <= MAX_PER_SECOND:
        raise ValueError(
            f"must be a number from {MIN_PER_SECOND} to {MAX_PER_SECOND:g} (messages a second); "
            "for slower pacing set min_interval, e.g. min_interval = '1h'"
        )
    return v


def _weight(v: float) -> float:
    if not math.isfinite(v) or not 0 < v <= MAX_WEIGHT:
        raise ValueError(f"must be a number above 0 and at most {MAX_WEIGHT:,.0f}")
    return v


Duration = Annotated[timedelta, BeforeValidator(_to_duration)]
PerSecond = Annotated[float, AfterValidator(_per_second)]
Weight = Annotated[float, AfterValidator(_weight)]
WindowSpec = Annotated[Window, BeforeValidator(_to_window)]
DaysSpec = Annotated[frozenset[int], BeforeValidator(_to_days)]
TimeZoneName = Annotated[str, BeforeValidator(_to_timezone)]
PerSpanSpec = Annotated[PerSpan, BeforeValidator(_to_per_span)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)


class Settings(_Model):
    database: str = "campaignctl.db"
    timezone: TimeZoneName = "UTC"
    default_region: str | None = None
    #: At most N messages to one lead in any rolling duration, across campaigns and channels.
    max_per_lead: PerSpanSpec | None = None

    @field_validator("database")
    @classmethod
    def _supported(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name the SQLite database file, e.g. 'campaignctl.db'")
        scheme = v.split("://", 1)[0].lower() if "://" in v else "sqlite"
        if scheme.split("+", 1)[0] not in DATABASE_SCHEMES:
            raise ValueError(
                f"{scheme!r} databases are not supported: campaignctl keeps its data in SQLite "
                "or PostgreSQL; give a file path such as 'campaignctl.db' or a postgresql:// URL"
            )
        return v


class Daemon(_Model):
    """`campaignctl daemon`: how often it runs the engine's pass and a `sync`."""

    tick: Duration = timedelta(seconds=10)
    sync_interval: Duration = timedelta(minutes=5)

    @field_validator("tick", "sync_interval")
    @classmethod
    def _at_least_a_second(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return v


#: Characters that end a header line or have no business in one: C0 controls (CR, LF, and the
#: VT, FF and FS-RS that Python's email generator also splits on), DEL, C1 controls (NEL
#: U+0085 among them) and the Unicode line and paragraph separators U+2028 and U+2029.
HEADER_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def header_problem(v: str) -> str | None:
    """Why `v` cannot be an email header value, or None: a line break or control character
    would let it end the header and write headers of its own (`Bcc:`)."""
    m = HEADER_UNSAFE.search(v)
    if m is None and len(v.splitlines()) <= 1:
        return None
    what = f" (U+{ord(m.group(0)):04X})" if m else ""
    return (
        f"contains a line break or control character{what}; "
        "it goes into an email header, which is one line"
    )


def _one_line(v: str) -> str:
    """A value that reaches an email header: see `header_problem`."""
    why = header_problem(v)
    if why:
        raise ValueError(why)
    return v


def _address(v: str) -> str:
    """An email address (checked by email-validator, without DNS), on one line."""
    from campaignctl.leads.normalise import normalise_email

    _one_line(v)
    _, why = normalise_email(v)
    if why:
        raise ValueError(f"not an email address: {why}")
    return v


#: Schemes `sender.unsubscribe_url` may use (RFC 8058 one-click needs https; mailto is common).
UNSUBSCRIBE_SCHEMES = ("https", "http", "mailto")


def url_problem(v: str) -> str | None:
    """Why `v` is not an http(s) or mailto URL for a `List-Unsubscribe` header, or None."""
    from urllib.parse import urlsplit

    why = header_problem(v)
    if why:
        return why
    if " " in v or "<" in v or ">" in v:
        return "not a URL: it contains a space or an angle bracket"
    parts = urlsplit(v)
    if parts.scheme.lower() not in UNSUBSCRIBE_SCHEMES:
        return "must be an https://, http:// or mailto: URL"
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        return "not a URL: it has no host (https://example.com/unsubscribe)"
    if parts.scheme.lower() == "mailto" and "@" not in parts.path:
        return "not a mailto: URL with an address"
    return None


def _unsubscribe_url(v: str) -> str:
    """The URL with each `{{ ... }}` expression replaced by a placeholder must be a URL; the
    rendered URL is checked again per sample lead by `check`."""
    literal = re.sub(r"\{\{.*?\}\}", "x", v, flags=re.DOTALL)
    if "{{" in literal or "{%" in literal:
        return v  # not a template: compiling it reports why (see render.py)
    why = url_problem(literal)
    if why:
        raise ValueError(why)
    return v


#: A value that reaches an email header (sender name and addresses, subjects).
OneLine = Annotated[str, AfterValidator(_one_line)]
Address = Annotated[str, AfterValidator(_address)]
UnsubscribeUrl = Annotated[str, AfterValidator(_unsubscribe_url)]


class Sender(_Model):
    name: OneLine = ""
    email: Address | None = None
    reply_to: Address | None = None
    postal_address: str | None = None
    #: May use `{{ lead.x }}`: rendered per lead, values URL-encoded (see render.py); only
    #: `{{ }}` expressions, no `{% %}` statements. An http(s) or mailto URL.
    unsubscribe_url: UnsubscribeUrl | None = None


class Warmup(_Model):
    """`warmup = { start = 20, days = 30 }`: the daily limit ramps from `start` to
    `daily_limit` over `days` from the channel's first send (checked in `validate`)."""

    start: int
    days: int


class ChannelBase(_Model):
    """Pacing and hours shared by every provider."""

    if TYPE_CHECKING:
        provider: str  # each provider's model declares it: `provider: Literal["gmail"]`

    kind: ChannelKind | None = None
    daily_limit: PositiveInt | None = None
    hourly_limit: PositiveInt | None = None
    per_second: PerSecond | None = None
    min_interval: Duration | None = None
    jitter: Duration | None = None
    window: WindowSpec | None = None
    days: DaysSpec | None = None
    warmup: Warmup | None = None
    max_attempts: PositiveInt = 5
    retry_backoff: Duration = timedelta(minutes=1)
    # a transient error never fails a message before this long after its first attempt
    give_up_after: Duration = timedelta(days=3)


if TYPE_CHECKING:
    #: At run time, the union of the registered providers' models (`registry.config_union`),
    #: told apart by `provider`; set by `use_providers` before the first validation.
    ChannelConfig = ChannelBase


def use_providers() -> None:
    """Build `Config`'s `[channels.NAME]` union from the providers registered now.

    Not at import: a provider's module imports this one (for `ChannelBase`), so the union can
    only be built once this module is whole. Cheap when nothing was registered since.
    """
    from campaignctl.channels.registry import config_union

    union = config_union()
    if globals().get("ChannelConfig") is not union:
        globals()["ChannelConfig"] = union
        # a field resolved once is not resolved again by a rebuild: give it the new union
        Config.model_fields["channels"].annotation = dict[str, union]  # type: ignore[valid-type]
        Config.model_rebuild(force=True)


class Variant(_Model):
    name: str
    weight: Weight = 1.0
    subject: OneLine | None = None
    body: str | None = None
    template: str | None = None
    #: "draft": written by `campaignctl draft`, never sent until `draft approve` removes the key.
    status: Literal["active", "draft"] = "active"


#: What an A/B test compares: replies or delivery receipts per send (clicks once links are
#: tracked: until then `check` warns and the fallback wins).
AbMetric = Literal["reply_rate", "delivery_rate", "click_rate"]


class AbTest(_Model):
    """`[campaigns.C.steps.ab]`: the A/B test of a step with variants (see docs/engine.md).

    `test_fraction` of the step's leads get a variant each (by weight); the rest wait `wait`
    after the test's first send, then get the winner by `metric`: the best variant if a
    two-proportion z-test against the runner-up has p < 1 - `confidence` and every variant was
    sent at least `min_per_variant` times, else `fallback`.
    """

    test_fraction: float = Field(default=0.2, gt=0, le=1)
    wait: Duration = timedelta(days=2)
    metric: AbMetric = "reply_rate"
    confidence: float = Field(default=0.95, ge=0.5, le=0.999)
    min_per_variant: PositiveInt = 100
    fallback: str

    @field_validator("wait")
    @classmethod
    def _positive_wait(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration such as '2d'")
        return v


class Step(_Model):
    name: str = ""
    channel: str
    delay: Duration = timedelta(0)
    subject: OneLine | None = None
    body: str | None = None
    template: str | None = None
    thread: bool = False
    content_sid: str | None = None
    content_variables: dict[str, str] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list)
    #: email only: files inside the project, each may be a template rendered per lead
    #: (`files/{{ lead.city | lower }}.pdf`); see campaignctl/attachments.py
    attachments: list[str] = Field(default_factory=list)
    ab: AbTest | None = None


class Campaign(_Model):
    #: sequence: enrols on every pass (or on `enrol_on` events); blast: once; trigger: on
    #: `campaignctl trigger` events (campaignctl/trigger.py)
    kind: Literal["blast", "sequence", "trigger"] = "sequence"
    status: Literal["draft", "active", "paused", "completed", "archived"] = "draft"
    description: str | None = None
    audience: str | None = None
    stop_on: list[StopReason] = Field(default_factory=lambda: list(STOP_REASONS))
    priority: int = 10
    start_at: datetime | None = None
    #: a sequence's enrolling lead events: "import", "status:VALUE", "tag:VALUE" (ENROL_ON_FORMS);
    #: with it, a lead enrols when the event happens, not on every pass
    enrol_on: list[str] = Field(default_factory=list)
    #: enrol a lead again on a later event once its enrolment ended (not supported yet)
    reenrol: bool = False
    steps: list[Step] = Field(default_factory=list)


#: Template files and includes must end with one of these (`welcome.md.j2`, `footer.txt`).
TEMPLATE_SUFFIXES = (
    ".j2",
    ".jinja",
    ".jinja2",
    ".md",
    ".markdown",
    ".txt",
    ".text",
    ".html",
    ".htm",
)


class Config(_Model):
    settings: Settings = Field(default_factory=Settings)
    sender: Sender = Field(default_factory=Sender)
    daemon: Daemon = Field(default_factory=Daemon)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    campaigns: dict[str, Campaign] = Field(default_factory=dict)

    _path: Path = PrivateAttr(default=Path(DEFAULT_CONFIG))

    def __init__(self, **data: Any) -> None:
        use_providers()
        super().__init__(**data)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent

    def resolve(self, relative: str) -> Path:
        """An operator's path (outbox, database, credentials), relative to the campaign file.

        `~` is expanded and absolute paths are taken as they are; template paths are not
        resolved here but by `template_path`, which keeps them inside the directory.
        """
        p = Path(os.path.expanduser(relative))
        return p if p.is_absolute() else self.base_dir / p

    def template_path(self, name: str) -> Path:
        """A template file's path: relative to the campaign file and inside its directory.

        A campaign file may come from a pull request, so an absolute path, a `~`, or a `..` or
        symlink that leaves the directory is refused (else `template = "/proc/self/environ"`
        would mail the process environment to every lead). Raises ValueError saying why.
        """
        self._inside(name, "template")
        return self.base_dir / name

    def attachment_path(self, name: str) -> Path:
        """An attachment's path: refused exactly as `template_path` refuses a template (outside
        the directory, hidden, credentials, the database), any suffix allowed. ValueError."""
        self._inside(name, "attachment")
        return self.base_dir / name

    def _inside(self, name: str, what: str) -> tuple[Path, Path]:
        """(the real path, the real directory) of `name`, a `what` file inside the campaign
        file's directory that is neither hidden nor a secret; ValueError saying why not."""
        if not name.strip():
            raise ValueError(f"{what} path is empty")
        if name.startswith("~") or Path(name).is_absolute():
            raise ValueError(
                f"{what} path {name!r} must be relative to the campaign file's directory"
            )
        try:
            base = self.base_dir.resolve()
            real = (base / name).resolve()
            inside = real.is_relative_to(base)
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise ValueError(f"{what} path {name!r} cannot be resolved: {exc}") from None
        if not inside:
            raise ValueError(
                f"{what} path {name!r} leads out of the campaign file's directory "
                f"{base} (through '..' or a symlink)"
            )
        self._refuse_secret(name, base, real, what)
        return real, base

    def _refuse_secret(self, name: str, base: Path, real: Path, what: str) -> None:
        """Template files are text a campaign mails out, attachments files it mails out: never
        a hidden file (`.env`, `.git/config`, `.secrets/...`), a template without a template
        suffix (`TEMPLATE_SUFFIXES`), a channel's credentials or the database, even when a
        symlink points there."""
        for shown in (Path(name), real.relative_to(base)):
            if any(part.startswith(".") and part not in (".", "..") for part in shown.parts):
                raise ValueError(
                    f"{what} path {name!r} is a hidden file or inside a hidden folder "
                    f"({shown}): those hold credentials and settings, not {what}s"
                )
        if what == "template" and not (
            real.name.endswith(TEMPLATE_SUFFIXES) and name.endswith(TEMPLATE_SUFFIXES)
        ):
            raise ValueError(
                f"template path {name!r} does not end with a template suffix: use one of "
                + ", ".join(TEMPLATE_SUFFIXES)
            )
        url = self.database_url()  # sqlite:///path
        secrets = [Path(url.split(":///", 1)[1])] if ":///" in url else []
        for ch in self.channels.values():
            for attr in ("credentials", "service_account", "ca_file"):
                value = getattr(ch, attr, None)
                if isinstance(value, str):
                    secrets.append(self.resolve(value))
        for secret in secrets:
            same = False
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                same = secret.resolve() == real
            if same:
                raise ValueError(f"{what} path {name!r} is a channel's credentials or the database")

    def database_url(self) -> str:
        """The database every command uses: $CAMPAIGNCTL_DATABASE when set (a URL, or a file
        path relative to the campaign file), else `settings.database`."""
        db = os.environ.get(DATABASE_ENV) or self.settings.database
        if "://" in db:
            return db
        return f"sqlite:///{self.resolve(db)}"

    def channel_kind(self, name: str) -> str:
        """email, sms or whatsapp: explicit `kind`, else what the provider or name implies."""
        ch = self.channels[name]
        return infer_kind(name, ch) or "email"

    def campaign(self, name: str) -> Campaign:
        from campaignctl.config.validate import did_you_mean
        from campaignctl.errors import NotFoundError

        try:
            return self.campaigns[name]
        except KeyError:
            raise NotFoundError(
                f"{self.path}: no campaign named {name!r}{did_you_mean(name, self.campaigns)}",
                "run `campaignctl campaign list` to see the campaigns",
            ) from None


def infer_kind(name: str, ch: ChannelBase) -> str | None:
    """`kind`, else the provider's only kind, else what its values, the channel's name or the
    provider's default tell."""
    from campaignctl.channels.registry import get

    if ch.kind:
        return ch.kind
    provider = get(ch.provider)
    if len(provider.kinds) == 1:
        return provider.kinds[0]
    told = provider.kind_of(ch) if provider.kind_of else None
    if told:
        return told
    if name in CHANNEL_KINDS:
        return name
    return provider.default_kind
