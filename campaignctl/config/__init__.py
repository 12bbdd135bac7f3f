"""The campaign file: read with tomllib, validated with pydantic, every problem reported at once.

`load()` is what commands call; `validate_text()` is what `check` and the editor call, because
they want the list of problems rather than an exception. Key paths look like
`campaigns.welcome.steps[1].channel` (array indexes count from 0), and carry the line where the
key is written when it can be found.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tomllib
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
    ValidationError,
    field_validator,
)

from campaignctl.errors import CampaignctlError, ConfigError, Problem
from campaignctl.timespec import Window, parse_days, parse_duration, parse_window

DEFAULT_CONFIG = "campaigns.toml"
CONFIG_ENV = "CAMPAIGNCTL_CONFIG"
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)


class Settings(_Model):
    database: str = "campaignctl.db"
    timezone: TimeZoneName = "UTC"
    default_region: str | None = None

    @field_validator("database")
    @classmethod
    def _sqlite_only(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name the SQLite database file, e.g. 'campaignctl.db'")
        scheme = v.split("://", 1)[0].lower() if "://" in v else "sqlite"
        if scheme.split("+", 1)[0] != "sqlite":
            # leads import, send --dry-run and the locks work on a SQLite file only
            raise ValueError(
                f"{scheme!r} databases are not supported: campaignctl keeps its data in SQLite; "
                "give a file path such as 'campaignctl.db'"
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
    from campaignctl.leads import normalise_email

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


class Campaign(_Model):
    kind: Literal["blast", "sequence"] = "sequence"
    status: Literal["draft", "active", "paused", "completed", "archived"] = "draft"
    description: str | None = None
    audience: str | None = None
    stop_on: list[StopReason] = Field(default_factory=lambda: list(STOP_REASONS))
    priority: int = 10
    start_at: datetime | None = None
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
        if name.startswith("~") or Path(name).is_absolute():
            raise ValueError(
                f"template path {name!r} must be relative to the campaign file's directory"
            )
        try:
            base = self.base_dir.resolve()
            inside = (base / name).resolve().is_relative_to(base)
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            raise ValueError(f"template path {name!r} cannot be resolved: {exc}") from None
        if not inside:
            raise ValueError(
                f"template path {name!r} leads out of the campaign file's directory "
                f"{base} (through '..' or a symlink)"
            )
        self._refuse_secret(name, base, (base / name).resolve())
        return self.base_dir / name

    def _refuse_secret(self, name: str, base: Path, real: Path) -> None:
        """Template files are text a campaign mails out: never a hidden file (`.env`,
        `.git/config`, `.secrets/...`), a channel's credentials, the database, or a file without
        a template suffix (`TEMPLATE_SUFFIXES`), even when a symlink points there."""
        for shown in (Path(name), real.relative_to(base)):
            if any(part.startswith(".") and part not in (".", "..") for part in shown.parts):
                raise ValueError(
                    f"template path {name!r} is a hidden file or inside a hidden folder "
                    f"({shown}): those hold credentials and settings, not templates"
                )
        if not real.name.endswith(TEMPLATE_SUFFIXES) or not name.endswith(TEMPLATE_SUFFIXES):
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
                raise ValueError(
                    f"template path {name!r} is a channel's credentials or the database"
                )

    def database_url(self) -> str:
        db = self.settings.database
        if "://" in db:
            return db
        return f"sqlite:///{self.resolve(db)}"

    def channel_kind(self, name: str) -> str:
        """email, sms or whatsapp: explicit `kind`, else what the provider or name implies."""
        ch = self.channels[name]
        return _infer_kind(name, ch) or "email"

    def campaign(self, name: str) -> Campaign:
        from campaignctl.errors import NotFoundError

        try:
            return self.campaigns[name]
        except KeyError:
            raise NotFoundError(
                f"{self.path}: no campaign named {name!r}{did_you_mean(name, self.campaigns)}",
                "run `campaignctl campaign list` to see the campaigns",
            ) from None


def _infer_kind(name: str, ch: ChannelBase) -> str | None:
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


def did_you_mean(name: str, choices: Any) -> str:
    """`; did you mean 'welcome'?` when a close name exists, else ''."""
    import difflib

    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------- locating keys in the text


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEYLINE = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _split_key(raw: str) -> list[str]:
    parts = re.findall(r"""\s*("[^"]*"|'[^']*'|[^.]+)\s*(?:\.|$)""", raw)
    return [p.strip().strip("\"'") for p in parts if p.strip()]


def locate_keys(text: str) -> dict[str, int]:
    """Map key paths (`campaigns.welcome.steps[1].channel`) to the 1-based line defining them.

    tomllib gives no positions, so this follows table headers and key lines; multi-line strings
    are skipped. Inline tables map to the line of their key.
    """
    lines: dict[str, int] = {}
    aot: dict[str, int] = {}  # raw dotted path of an array of tables -> current index
    current = ""
    in_ml: str | None = None
    for no, line in enumerate(text.splitlines(), start=1):
        if in_ml:
            if line.count(in_ml) % 2 == 1:
                in_ml = None
            continue
        m = _HEADER.match(line)
        if m:
            is_array = m.group(1) == "[["
            keys = _split_key(m.group(2))
            resolved, raw = [], []
            for i, k in enumerate(keys):
                raw.append(k)
                raw_key = ".".join(raw)
                resolved.append(k)
                last = i == len(keys) - 1
                if last and is_array:
                    aot[raw_key] = aot.get(raw_key, -1) + 1
                    for stale in [s for s in aot if s.startswith(raw_key + ".")]:
                        del aot[stale]
                if raw_key in aot:
                    resolved[-1] = f"{k}[{aot[raw_key]}]"
            current = ".".join(resolved)
            lines.setdefault(current, no)
            continue
        km = _KEYLINE.match(line)
        if km:
            key = ".".join(_split_key(km.group(1)))
            path = f"{current}.{key}" if current else key
            lines.setdefault(path, no)
            rest = line[km.end() :]
            for q in ('"""', "'''"):
                if rest.count(q) % 2 == 1:
                    in_ml = q
    return lines


def line_of(path: str, lines: dict[str, int]) -> int | None:
    """The line of `path`, else of its nearest written ancestor."""
    p = path
    while p:
        if p in lines:
            return lines[p]
        cut = max(p.rfind("."), p.rfind("["))
        p = p[:cut] if cut > 0 else ""
    return None


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# ---------------------------------------------------------------- validation


def validate_data(
    data: dict[str, Any], path: Path, text: str = "", *, remainder: bool = False
) -> tuple[Config | None, list[Problem]]:
    """Validate parsed TOML. Returns the config (None if unusable) and every problem found.

    When some keys are refused (unknown, or a value of the wrong shape), the rest of the file
    is still checked: the refused keys are left out and the cross-key rules run on what
    remains, so a typo'd key and a bad reference show in one run. With `remainder`, that
    remainder comes back as the config (for `check` to render); otherwise it is None.
    """
    use_providers()
    lines = locate_keys(text) if text else {}
    problems: list[Problem] = []
    refused: set[str] = set()
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            key = format_loc(_data_loc(err["loc"]))
            problems.append(Problem(key, _message(err), line=line_of(key, lines), file=path))
        rest, refused = _remainder(data, exc.errors())
        if rest is None:
            return None, problems
        rest._path = path
        problems.extend(_unrelated(semantic_problems(rest, lines), refused))
        return (rest if remainder else None), problems
    cfg._path = path
    problems.extend(semantic_problems(cfg, lines))
    return cfg, problems


def _data_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    from campaignctl.channels.registry import providers

    # pydantic puts the union tag in the location: channels.sms.twilio.from
    if len(loc) > 2 and loc[0] == "channels" and loc[2] in providers():
        return loc[:2] + loc[3:]
    return loc


#: How an unknown key's problem starts; `check` still renders a step that has one.
UNKNOWN_KEY = "unknown key"


def is_unknown_key(problem: Problem) -> bool:
    """Whether a problem is only an unknown key (the rest of its table was still validated)."""
    return problem.message.startswith(UNKNOWN_KEY)


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        loc = err["loc"]
        known = _known_keys(loc[:-1])
        return f"{UNKNOWN_KEY} (a typo here would silently change behaviour)" + did_you_mean(
            str(loc[-1]), known
        )
    if kind == "missing":
        return "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        from campaignctl.channels.registry import providers, unknown_provider_message

        names = list(providers())
        if kind == "union_tag_invalid":
            return unknown_provider_message(err["input"].get("provider"), names)
        return f"required key 'provider' is missing ({', '.join(names[:-1])} or {names[-1]})"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _bare(ann: Any) -> Any:
    """`X` from `Annotated[X, ...]` and `X | None`."""
    import types
    import typing

    while True:
        if typing.get_origin(ann) is Annotated:
            ann = typing.get_args(ann)[0]
        elif typing.get_origin(ann) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(args) != 1:
                return ann
            ann = args[0]
        else:
            return ann


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at a pydantic error location accepts (union tags included)."""
    import types
    import typing

    node: Any = Config
    for part in loc:
        node = _bare(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            fields = {(f.alias or n): f.annotation for n, f in node.model_fields.items()}
            node = fields.get(str(part))
        elif typing.get_origin(node) in (list, dict):
            node = typing.get_args(node)[-1]
        elif typing.get_origin(node) in (typing.Union, types.UnionType):
            tagged = [
                m
                for m in typing.get_args(node)
                if part in typing.get_args(m.model_fields["provider"].annotation)
            ]
            node = tagged[0] if tagged else None
        if node is None:
            return []
    node = _bare(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return []


def _remainder(data: dict[str, Any], errors: list[Any]) -> tuple[Config | None, set[str]]:
    """The config without the keys pydantic refused, and the key paths of refused values.

    An unknown key is simply left out. A bad value is left out too (its default applies), a
    missing required key takes its table along, and a bad list element takes its list (the
    indexes of the others must not shift). None when the document itself is unusable.
    """
    import copy

    pruned = copy.deepcopy(data)
    refused: set[str] = set()
    for _ in range(5):  # each round can only remove more; a few rounds always settle
        for err in errors:
            loc = _data_loc(err["loc"])
            if err["type"] == "missing":
                loc = loc[:-1]
            while loc and isinstance(loc[-1], int):
                loc = loc[:-1]
            if not loc:
                return None, refused
            _delete(pruned, loc)
            if err["type"] != "extra_forbidden" or loc != _data_loc(err["loc"]):
                refused.add(format_loc(loc))
        try:
            cfg = Config.model_validate(pruned)
        except ValidationError as exc:
            errors = exc.errors()
            continue
        # a step on a refused channel would only report that channel again
        for cname, camp in cfg.campaigns.items():
            for i, step in enumerate(camp.steps):
                if refused & {"channels", f"channels.{step.channel}"}:
                    refused.add(f"campaigns.{cname}.steps[{i}]")
        return cfg, refused
    return None, refused


def _delete(data: Any, loc: tuple[int | str, ...]) -> None:
    for part in loc[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(data, dict):
        data.pop(loc[-1], None)


def _unrelated(problems: list[Problem], refused: set[str]) -> list[Problem]:
    """Cross-key problems, without those about a refused value's place (its default stands in
    there, so they would only repeat the refusal or report the default)."""

    def near(p: str, q: str) -> bool:
        return p == q or p.startswith((q + ".", q + "[")) or q.startswith((p + ".", p + "["))

    return [p for p in problems if not any(near(p.path, q) for q in refused)]


def semantic_problems(cfg: Config, lines: dict[str, int] | None = None) -> list[Problem]:
    """Rules that span keys: names, references, limits, step contents, template files."""
    from campaignctl.channels.registry import get

    lines = lines or {}
    out: list[Problem] = []

    def add(path: str, msg: str, severity: str = "error") -> None:
        out.append(Problem(path, msg, severity, line_of(path, lines), cfg.path))

    if cfg.settings.default_region is not None:
        import phonenumbers

        if cfg.settings.default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            add(
                "settings.default_region",
                f"unknown region {cfg.settings.default_region!r}: "
                "use an ISO 3166 two-letter code such as 'PH' or 'US'",
            )
    for name, ch in cfg.channels.items():
        base = f"channels.{name}"
        if not NAME_RE.fullmatch(name):
            add(base, "channel names use letters, digits, '-' and '_'")
        kind = _infer_kind(name, ch)
        if kind is None:
            add(
                f"{base}.kind",
                "cannot tell whether this is an email, sms or whatsapp channel: "
                'set kind = "email" | "sms" | "whatsapp"',
            )
        elif kind not in get(ch.provider).kinds:
            add(f"{base}.kind", f"provider {ch.provider!r} cannot send {kind}")
        if ch.daily_limit and ch.hourly_limit and ch.hourly_limit > ch.daily_limit:
            add(
                f"{base}.hourly_limit",
                f"hourly_limit ({ch.hourly_limit}) exceeds daily_limit ({ch.daily_limit})",
            )
        rules = get(ch.provider).problems
        for key, msg, severity in rules(ch) if rules else ():
            add(f"{base}.{key}", msg, severity)

    for cname, camp in cfg.campaigns.items():
        base = f"campaigns.{cname}"
        if not NAME_RE.fullmatch(cname):
            add(base, "campaign names use letters, digits, '-' and '_'")
        if camp.status == "active" and not camp.steps:
            add(f"{base}.steps", "an active campaign needs at least one step")
        seen: dict[str, int] = {}
        for i, step in enumerate(camp.steps):
            sp = f"{base}.steps[{i}]"
            if not step.name:
                step.name = f"step{i + 1}"
            if step.name in seen:
                add(
                    f"{sp}.name",
                    f"step name {step.name!r} is already used by steps[{seen[step.name]}]",
                )
            seen.setdefault(step.name, i)
            if step.channel not in cfg.channels:
                add(
                    f"{sp}.channel",
                    f"no channel named {step.channel!r} in [channels]"
                    f"{did_you_mean(step.channel, cfg.channels)}",
                )
                continue
            kind = _infer_kind(step.channel, cfg.channels[step.channel])
            _step_content_problems(cfg, step, sp, kind, add)
    return out


def _template_file_problem(cfg: Config, name: str, key: str, add: Any) -> None:
    try:
        path = cfg.template_path(name)
    except ValueError as exc:
        add(key, str(exc))
        return
    if not path.is_file():
        add(key, f"template file {name!r} not found (looked in {path})")


def _step_content_problems(cfg: Config, step: Step, sp: str, kind: str | None, add: Any) -> None:
    sources = [k for k in ("body", "template") if getattr(step, k)]
    if len(sources) > 1:
        add(f"{sp}.template", "give either 'body' or 'template', not both")
    has_content = bool(sources) or bool(step.content_sid)
    if step.variants:
        for j, var in enumerate(step.variants):
            vp = f"{sp}.variants[{j}]"
            if var.body and var.template:
                add(f"{vp}.template", "give either 'body' or 'template', not both")
            if not (var.body or var.template or has_content):
                add(vp, "this variant has no 'body' or 'template', and neither has its step")
            if var.template:
                _template_file_problem(cfg, var.template, f"{vp}.template", add)
        names = [v.name for v in step.variants]
        if len(set(names)) != len(names):
            add(f"{sp}.variants", "variant names must be unique within a step")
    elif not has_content:
        add(sp, "a step needs 'body' or 'template'")
    if step.template:
        _template_file_problem(cfg, step.template, f"{sp}.template", add)
    if kind == "email":
        variant_subjects = bool(step.variants) and all(v.subject for v in step.variants)
        if not (step.subject or step.thread or variant_subjects):
            add(
                f"{sp}.subject",
                "an email step needs a 'subject' (or thread = true to reply in the thread)",
            )
        if step.content_sid:
            add(f"{sp}.content_sid", "content_sid is for WhatsApp steps")
    else:
        if step.subject:
            add(f"{sp}.subject", f"{kind} messages have no subject; it would be ignored", "warning")
        if step.thread:
            add(f"{sp}.thread", "thread is for email steps")
        if step.content_sid and kind != "whatsapp":
            add(f"{sp}.content_sid", "content_sid is for WhatsApp steps")


# ---------------------------------------------------------------- loading


def find_config(path: Path | None) -> Path:
    """The campaign file to use: --config, else $CAMPAIGNCTL_CONFIG, else ./campaigns.toml."""
    if path is not None:
        return path
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else Path(DEFAULT_CONFIG)


def read_text(path: Path) -> str:
    """The campaign file's text, or a one-line error that says how to get one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CampaignctlError(
            f"{path}: no campaign file here",
            "run `campaignctl init` to create one, or point to it with --config FILE or -C DIR",
        ) from None
    except IsADirectoryError:
        raise CampaignctlError(
            f"{path}: is a directory, not a campaign file",
            "pass the file itself with --config FILE",
        ) from None
    except OSError as exc:
        raise CampaignctlError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CampaignctlError(
            f"{path}: not UTF-8 text (byte {exc.start})", "save the campaign file as UTF-8"
        ) from None


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """tomllib with its syntax errors turned into a `file:line:col` one-liner."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else str(path)
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg).rstrip(".")
        raise ConfigError(
            [
                Problem(
                    "",
                    f"TOML syntax error: {reason}" + (f" (column {m.group(2)})" if m else ""),
                    line=int(m.group(1)) if m else None,
                    file=path,
                )
            ],
            hint=f"fix the syntax at {where}",
        ) from None


def validate_text(
    text: str, path: Path, *, remainder: bool = False
) -> tuple[Config | None, list[Problem]]:
    """Parse and validate; a syntax error comes back as a single problem."""
    try:
        data = parse_toml(text, path)
    except ConfigError as exc:
        return None, exc.problems
    return validate_data(data, path, text, remainder=remainder)


def load(path: Path | None = None) -> Config:
    """The validated campaign file; raises ConfigError listing every error (warnings pass)."""
    path = find_config(path)
    cfg, problems = validate_text(read_text(path), path)
    errors = [p for p in problems if p.severity == "error"]
    if errors or cfg is None:
        raise ConfigError(errors)
    return cfg
