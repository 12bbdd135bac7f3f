"""Editing the campaign file: comments and layout survive, edits are validated, writes atomic.

Each public function here is one CLI command's core. They share one path (`_edit`):
take an exclusive lock beside the file, read the text, change it with tomlkit, validate the
result exactly as `check` does, and only then replace the file atomically (same folder, fsync,
rename, original permission bits). A refused edit leaves the file byte-for-byte untouched.

tomlkit keeps what we do not touch, but it files the comments and blank lines *between* two
tables under the first one. Left alone, a new step would land under the comment that describes
the next one, and removing a step would take its successor's comment with it. So structural
edits also move that "trivia" the way a person editing the file would (`_settle`,
`_remove_trivia`).
"""

from __future__ import annotations

import codecs
import os
import stat
import tomllib
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Array, InlineTable, Item, Null, Table, Whitespace

from campaignctl.checks import check_text
from campaignctl.config import (
    Campaign,
    ChannelBase,
    Step,
    did_you_mean,
    parse_toml,
    read_text,
)
from campaignctl.errors import CampaignctlError, ConfigError, NotFoundError, Problem, UsageError
from campaignctl.locking import FileLock

if TYPE_CHECKING:
    from pydantic import BaseModel

    from campaignctl.config import Config

#: How long an edit waits for another edit of the same file to finish.
LOCK_WAIT_SECONDS = 10.0


@dataclass
class Outcome:
    """What an edit did: a one-line summary for the user, and the warnings `check` would print."""

    path: Path
    summary: str
    changed: bool = True
    warnings: list[Problem] = field(default_factory=list)


# ---------------------------------------------------------------- the edit transaction


def lock_path(path: Path) -> Path:
    """The sidecar lock file that serialises edits of `path`."""
    return path.parent / f".{path.name}.lock"


def _real(path: Path) -> Path:
    # Edit the file a symlink points to; os.replace on the link would turn it into a copy.
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _ensure_writable(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        read_text(path)  # raises the usual "no campaign file here"
        raise
    except OSError as exc:
        raise CampaignctlError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        read_text(path)  # raises the usual "is a directory, not a campaign file"
    # Mode bits as well as access(): root may write anything, but a file someone made
    # read-only says "do not edit me" to root too.
    if not stat.S_IMODE(st.st_mode) & 0o222 or not os.access(path, os.W_OK):
        raise CampaignctlError(
            f"{path}: the campaign file is read-only; nothing was changed",
            f"make it writable first (chmod u+w {path}), or edit a copy with --config FILE",
        )


def write_atomic(path: Path, text: str) -> None:
    """Replace the campaign file with `text` atomically, keeping its mode and owner."""
    from campaignctl.files import write_atomic as replace

    replace(
        path,
        text,
        like=path.stat(),
        folder_error=lambda exc: CampaignctlError(
            f"{path.parent}: cannot write in the campaign file's folder: {exc.strerror}",
            "the file is replaced atomically, so its folder must be writable",
        ),
    )


Change = Callable[[tomlkit.TOMLDocument], str]


def _edit(path: Path, change: Change, *, force: bool = False) -> Outcome:
    """Lock, re-read, change, validate the result like `check` (refusing the errors the change
    introduces, never a move to paused/archived/completed), refuse to orphan sent messages
    (unless `force`), write atomically."""
    path = _real(path)
    _ensure_writable(path)
    try:
        lock = FileLock(lock_path(path), "campaign file's edit lock").acquire(
            timeout=LOCK_WAIT_SECONDS,
            hint="another campaignctl edit of this file is running; try again when it ends",
        )
    except OSError as exc:
        raise CampaignctlError(
            f"{lock_path(path)}: cannot create the edit lock: {exc.strerror}",
            "edits need a writable folder beside the campaign file",
        ) from None
    try:
        return _edit_locked(path, change, force)
    finally:
        lock.release()


def _edit_locked(path: Path, change: Change, force: bool) -> Outcome:
    raw = path.read_bytes()
    text = read_text(path)
    steps_before = _step_names(parse_toml(text, path))  # tomllib's errors carry line and column
    doc = tomlkit.parse(text)
    summary = change(doc)
    # Lines we add are written with "\n"; a file written with "\r\n" throughout stays that way.
    crlf = "\r\n" in text and text.count("\n") == text.count("\r\n")
    new = doc.as_string().replace("\r\n", "\n") if crlf else doc.as_string()
    lf_text = text.replace("\r\n", "\n") if crlf else text
    if lf_text.endswith("\n") and not lf_text.endswith("\n\n"):
        new = new.rstrip("\n") + "\n"  # a removal at the end must not leave blank lines
    if new == lf_text:
        return Outcome(path, summary, changed=False)
    _same_data(doc, new, path)
    if crlf:
        new = new.replace("\n", "\r\n")
    report = check_text(new, path)  # everything `check` does, rendering for samples included
    cfg = report.config
    if cfg is None or (report.errors and not _only_stops(text, new)):
        # Refused for what the edit introduces: a problem the file already had (an audience
        # failing on a lead, an unwritable outbox) must not block an unrelated edit, nor a
        # pause in an emergency, which is never blocked at all (`_only_stops`).
        # A campaign being made active must be clean itself, and so must its channels.
        started = (
            tuple(
                f"{prefix}."
                for name in _activated(text, new)
                for prefix in [f"campaigns.{name}"]
                + [f"channels.{s.channel}" for s in cfg.campaigns[name].steps]
            )
            if cfg is not None
            else ()
        )
        before = {
            (p.path, p.message)
            for p in check_text(text, path).errors
            if not p.path.startswith(started)
        }
        introduced = [p for p in report.errors if (p.path, p.message) not in before]
        if introduced or cfg is None:
            # Lines would point into a file that was never written: the key path says where.
            # (A template file's own line stays: that file is on disk as it was.)
            raise ConfigError(
                [p if p.file not in (None, path) else replace(p, line=None) for p in introduced]
                or report.errors,
                hint=f"the edit was refused; {path} is unchanged",
            )
    if not force:
        _refuse_to_orphan_sent(cfg, steps_before)
    bom = codecs.BOM_UTF8.decode() if raw.startswith(codecs.BOM_UTF8) else ""
    write_atomic(path, bom + new)
    return Outcome(path, summary, warnings=report.warnings)


#: Statuses that stop sending: moving a campaign to one of them is never blocked by checks.
STOPPED_STATUSES = ("paused", "archived", "completed")


def _statuses(text: str) -> dict[str, Any]:
    try:
        camps = tomllib.loads(text).get("campaigns")
    except tomllib.TOMLDecodeError:
        return {}
    if not isinstance(camps, dict):
        return {}
    return {n: c.get("status", "draft") for n, c in camps.items() if isinstance(c, dict)}


def _activated(old: str, new: str) -> list[str]:
    """Campaigns this edit makes active (started, resumed, added active)."""
    before = _statuses(old)
    after = _statuses(new)
    return [n for n, st in after.items() if st == "active" and before.get(n) != "active"]


def _only_stops(old: str, new: str) -> bool:
    """Whether `new` differs from `old` only by campaigns moved to a status that stops them."""
    try:
        before, after = tomllib.loads(old), tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        return False
    camps_before, camps_after = before.get("campaigns"), after.get("campaigns")
    if not isinstance(camps_before, dict) or not isinstance(camps_after, dict):
        return False
    for name, camp in camps_after.items():
        was = camps_before.get(name)
        if (
            isinstance(camp, dict)
            and isinstance(was, dict)
            and camp.get("status") in STOPPED_STATUSES
            and camp.get("status") != was.get("status")
        ):
            if "status" in was:
                camp["status"] = was["status"]
            else:
                del camp["status"]
    return before == after


def _same_data(doc: tomlkit.TOMLDocument, new: str, path: Path) -> None:
    # Moving comments around writes raw text; make sure it still means what the tree says.
    try:
        ok = tomllib.loads(new) == doc.unwrap()
    except tomllib.TOMLDecodeError:
        ok = False
    if not ok:
        raise CampaignctlError(
            f"{path}: internal error: the edited text does not read back as intended; "
            "nothing was written",
            "this is a bug: please report the command and the campaign file",
        )


# ---------------------------------------------------------------- values and keys


def parse_value(raw: str) -> Any:
    """A TOML literal when `raw` is one (`2`, `true`, `["reply"]`), else the string itself.

    So `priority=2` sets a number and `audience=city == 'Manila'` a string, without quoting.
    To force a string that looks like a literal, quote it: `subject='"true"'`.
    """
    try:
        doc = tomlkit.parse(f"v = {raw}\n")
    except Exception:  # tomlkit raises several parse error types
        return raw
    if list(doc.keys()) != ["v"]:
        return raw
    return doc["v"].unwrap() if isinstance(doc["v"], Item) else doc["v"]


def parse_typed(raw: str, ann: Any) -> Any:
    """`raw` as the model's type for its key wants it: a key that only takes text keeps the
    text (`from=+15005550006` stays a string, not a number), others parse as `parse_value`.
    A quoted TOML string is unquoted either way."""
    value = parse_value(raw)
    if isinstance(value, str) or not _takes_text(ann):
        return value
    return raw


def _takes_text(ann: Any) -> bool:
    """Whether every value a field accepts is text: str, a Literal of strings, or a string
    spec (durations, windows, days are parsed from strings)."""
    import types
    from datetime import timedelta

    from campaignctl.timespec import Window

    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _takes_text(typing.get_args(ann)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_takes_text(a) for a in typing.get_args(ann) if a is not type(None))
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(ann))
    if origin is frozenset:  # `days`: mon-fri
        return True
    return ann in (str, timedelta, Window)


def split_assignment(text: str) -> tuple[list[str], str]:
    """`KEY=VALUE` -> (dotted key parts, raw value)."""
    key, sep, value = text.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not sep or not all(parts):
        raise UsageError(
            f"{text!r}: expected KEY=VALUE", "for example: priority=2 or audience=city == 'Manila'"
        )
    return parts, value


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """The keys a model accepts in the file (aliases such as `from` included)."""
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def _list_of_model(ann: Any) -> type[BaseModel] | None:
    from pydantic import BaseModel

    if typing.get_origin(ann) is list:
        (arg,) = typing.get_args(ann)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _is_dict(ann: Any) -> bool:
    return typing.get_origin(ann) is dict


def valid_keys(model: type[BaseModel]) -> list[str]:
    """What `set` accepts for this model: its keys, and `LIST.NAME.KEY` for named sub-tables."""
    out = []
    for key, ann in _fields(model).items():
        if _list_of_model(ann):
            out.append(f"{key}.NAME.KEY")
        elif _is_dict(ann):
            out.extend([key, f"{key}.KEY"])
        else:
            out.append(key)
    return out


def _channel_models() -> dict[str, type[BaseModel]]:
    # From the registry, so a new provider needs no change here.
    from campaignctl.channels.registry import providers

    return {name: p.config for name, p in providers().items()}


def _tables(items: Any) -> list[Any]:
    return list(items.body) if isinstance(items, AoT) else list(items)


def _named(table: Any, index: int) -> str:
    """A step's or variant's name; steps without one are `stepN`, as `check` names them."""
    name = table.get("name")
    return str(name) if name else f"step{index + 1}"


def _find_named(items: Any, name: str, where: str, what: str, hint: str | None) -> tuple[int, Any]:
    tables = _tables(items) if items is not None else []
    names = [_named(t, i) for i, t in enumerate(tables)]
    if name not in names:
        raise NotFoundError(f"{where}: no {what} named {name!r}{did_you_mean(name, names)}", hint)
    i = names.index(name)
    return i, tables[i]


def _assign_all(
    table: Any, model: type[BaseModel], assignments: list[str], where: str, hint: str | None
) -> None:
    """Apply `KEY=VALUE` pairs to one table in order."""
    for a in assignments:
        parts, raw = split_assignment(a)
        _assign(table, model, parts, raw, where, hint)


def _assign(
    table: Any, model: type[BaseModel], parts: list[str], raw: str, where: str, hint: str | None
) -> None:
    """Set (or, with an empty value, remove) `parts` in `table`, checking keys against `model`."""
    key, rest = parts[0], parts[1:]
    fields = _fields(model)
    if not rest and raw == "" and key in table:
        del table[key]  # removing is fine even for a key the (new) model would not accept
        return
    if key not in fields:
        raise UsageError(
            f"{where}: unknown key {key!r}{did_you_mean(key, fields)}",
            f"valid keys: {', '.join(valid_keys(model))}",
        )
    ann = fields[key]
    sub_model = _list_of_model(ann)
    if not rest:
        if sub_model is not None:
            raise UsageError(
                f"{where}.{key}: holds tables; set one of their keys ({key}.NAME.KEY)", hint
            )
        _put(table, key, raw, ann)
    elif _is_dict(ann) and len(rest) == 1:
        if key not in table:
            _put(table, key, tomlkit.inline_table())
        _put(table[key], rest[0], raw, typing.get_args(ann)[-1])
    elif sub_model is not None and len(rest) >= 2:
        what = "step" if sub_model is Step else key.rstrip("s")
        i, sub = _find_named(table.get(key), rest[0], f"{where}", what, hint)
        _assign(sub, sub_model, rest[1:], raw, f"{where}.{key}[{i}]", hint)
    else:
        shape = (
            f"{key}.NAME.KEY" if sub_model else f"{key}.KEY" if _is_dict(ann) else f"{key}=VALUE"
        )
        raise UsageError(f"{where}: {'.'.join(parts)!r} does not fit {key!r}: write {shape}")


def _put(table: Any, key: str, raw: Any, ann: Any = None) -> None:
    """Set one key, keeping its comment; a new key goes after the table's last key, not after
    the comments that introduce the next table. An empty string value removes the key.
    A string `raw` is parsed for the key's annotation `ann` (see `parse_typed`)."""
    value = parse_typed(raw, ann) if isinstance(raw, str) else raw
    if value == "" and isinstance(raw, str):
        if key in table:
            del table[key]
        return
    if key in table:
        table[key] = value
    elif isinstance(table, InlineTable):
        _add_inline(table, key, value)
    elif isinstance(table, Table):
        _add_key(table, key, value)
    else:
        table[key] = value


def _add_key(table: Table, key: str, value: Any) -> None:
    last_key: Any = None
    last: Any = None
    for k, item in table.value.body:
        if k is not None and not isinstance(item, (Table, AoT)):
            last_key, last = k, item
    new = tomlkit.item(value)
    if last_key is None:
        table.value._insert_at(0, key, new)
        return
    new.trivia.indent = last.trivia.indent  # an indented table stays indented
    table.value._insert_after(last_key, key, new)


def _add_inline(table: InlineTable, key: str, value: Any) -> None:
    # tomlkit appends after the closing padding of `{ a = 1 }`; keep the padding at the end.
    body = table.value.body
    pad = body[-1] if body and body[-1][0] is None and isinstance(body[-1][1], Whitespace) else None
    spaced = any(k is None and " " in v.as_string() for k, v in body)
    table[key] = value
    if pad is not None:
        body[len(body) - 2] = (None, Whitespace(""))
        body.append(pad)
    if spaced:
        added: Any = table.item(key)
        added.trivia.indent = " "


# ---------------------------------------------------------------- moving comments like a person


@dataclass
class _Node:
    """One rendered piece of the document, in file order: a header, a key line, or trivia."""

    kind: str  # "header" | "item" | "trivia"
    item: Any
    body: list[tuple[Any, Any]] | None = None
    index: int = -1

    @property
    def text(self) -> str:
        return str(self.item.as_string())

    def set_text(self, text: str) -> None:
        # Rewriting a trivia slot in place keeps tomlkit's key index valid; Whitespace renders
        # its text verbatim, so it can carry comment lines that moved here.
        assert self.body is not None
        self.body[self.index] = (None, Whitespace(text))


def _has_header(key: Any, table: Table) -> bool:
    if key is not None and key.is_dotted():
        return False
    return not table.is_super_table() or any(
        not isinstance(v, (Table, AoT, Whitespace, Null)) for _, v in table.value.body
    )


def _nodes(container: Container) -> Iterator[_Node]:
    for i, (key, item) in enumerate(container.body):
        if key is None:
            yield _Node("trivia", item, container.body, i)
        elif isinstance(item, Table):
            yield from _table_nodes(item, key)
        elif isinstance(item, AoT):
            for t in item.body:
                yield from _table_nodes(t, None)
        elif not isinstance(item, Null):
            yield _Node("item", item, container.body, i)


def _table_nodes(table: Table, key: Any) -> Iterator[_Node]:
    if _has_header(key, table):
        yield _Node("header", table)
    yield from _nodes(table.value)


def _trailing_trivia(nodes: list[_Node]) -> list[_Node]:
    out: list[_Node] = []
    for node in reversed(nodes):
        if node.kind != "trivia":
            break
        out.insert(0, node)
    return out


def _leading_blank(trivia: list[_Node]) -> int:
    n = 0
    while n < len(trivia) and isinstance(trivia[n].item, Whitespace):
        n += 1
    return n


def _append_after(nodes: list[_Node], text: str) -> None:
    """Render `text` right after the last non-trivia node (a key line or a header)."""
    last = next(n for n in reversed(nodes) if n.kind != "trivia")
    if not last.item.trivia.trail.endswith("\n"):
        text = "\n" + text  # the file ended without a newline
    last.item.trivia.trail += text


def _split_trailer(trailer: list[_Node]) -> tuple[list[_Node], list[_Node]]:
    """Comment lines right under a table's last key belong to it; from the first blank line on,
    trivia introduces what follows. With no blank line at all, it belongs to what follows."""
    first_blank = next(
        (i for i, n in enumerate(trailer) if isinstance(n.item, Whitespace)), len(trailer)
    )
    if first_blank == len(trailer):
        return [], trailer
    return trailer[:first_blank], trailer[first_blank:]


def _make_room(before: list[_Node], new: Table, more_follows: bool) -> None:
    """Prepare to render `new` right after the nodes `before`: a blank line before it, and the
    comments that sat after `before` (they introduce what follows) moved after `new`."""
    trailer = _trailing_trivia(before)
    own, rest = _split_trailer(trailer)
    blank = "".join(n.text for n in rest[: _leading_blank(rest)]) or "\n"
    moved = "".join(n.text for n in rest)
    if trailer:
        trailer[0].set_text("".join(n.text for n in own) + blank)
        for n in trailer[1:]:
            n.set_text("")
    else:
        _append_after(before, blank)
    if moved or more_follows:
        new.add(Whitespace(moved or "\n"))


def _settle(doc: tomlkit.TOMLDocument, new: Table) -> None:
    """Lay out a table just inserted, wherever tomlkit put it: a blank line before it, and the
    comments that introduced what now follows it moved below it."""
    new.trivia.indent = ""  # tomlkit's own blank line; ours is placed by _make_room
    everything = list(_nodes(doc))
    at = next(i for i, n in enumerate(everything) if n.kind == "header" and n.item is new)
    before = everything[:at]
    if any(n.kind != "trivia" for n in before):
        after = everything[at + len(list(_table_nodes(new, None))) :]
        _make_room(before, new, more_follows=bool(after))


def _remove_trivia(doc: tomlkit.TOMLDocument, target: Table) -> None:
    """Before deleting `target`: drop the comment lines attached above its header, and keep the
    comments after it (they introduce the next table) where it was."""
    everything = list(_nodes(doc))
    at = next(i for i, n in enumerate(everything) if n.kind == "header" and n.item is target)
    above = _trailing_trivia(everything[:at])
    gap = max((i for i, n in enumerate(above) if isinstance(n.item, Whitespace)), default=-1)
    for n in above[gap + 1 :]:
        n.set_text("")
    own_nodes = list(_table_nodes(target, None))
    _own, rest = _split_trailer(_trailing_trivia(own_nodes))
    keep = "".join(n.text for n in rest[_leading_blank(rest) :])
    if not keep:
        return
    if above:
        slot = above[max(gap, 0)]
        slot.set_text((slot.text if gap >= 0 else "") + keep)
    elif any(n.kind != "trivia" for n in everything[:at]):
        _append_after(everything[:at], keep)
    else:  # the first table of the file: the comments go above the next header
        following = everything[at + len(own_nodes) :]
        nxt = next((n for n in following if n.kind == "header"), None)
        if nxt is not None:
            nxt.item.trivia.indent = keep + nxt.item.trivia.indent


# ---------------------------------------------------------------- locating things in the doc


def _campaigns(doc: tomlkit.TOMLDocument, path: Path) -> Any:
    campaigns = doc.get("campaigns")
    if campaigns is None:
        raise NotFoundError(
            f"{path}: no campaigns yet", "add one with `campaignctl campaign add NAME`"
        )
    return campaigns


def _campaign(doc: tomlkit.TOMLDocument, name: str, path: Path) -> Any:
    campaigns = _campaigns(doc, path)
    if name not in campaigns:
        raise NotFoundError(
            f"{path}: no campaign named {name!r}{did_you_mean(name, list(campaigns.keys()))}",
            "run `campaignctl campaign list` to see the campaigns",
        )
    return campaigns[name]


def _step(camp: Any, campaign: str, step: str, path: Path) -> tuple[int, Any]:
    return _find_named(
        camp.get("steps"),
        step,
        f"{path}: campaigns.{campaign}",
        "step",
        f"run `campaignctl campaign show {campaign}` to see its steps",
    )


# ---------------------------------------------------------------- campaign edits


def add_campaign(
    path: Path,
    name: str,
    *,
    kind: str = "sequence",
    status: str = "draft",
    audience: str | None = None,
    priority: int | None = None,
) -> Outcome:
    """Append `[campaigns.NAME]` (a draft sequence for every lead unless told otherwise)."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        campaigns = doc.get("campaigns")
        if campaigns is not None and name in campaigns:
            raise UsageError(
                f"{path}: campaign {name!r} already exists",
                f"change it with `campaignctl campaign set {name} KEY=VALUE`",
            )
        new = tomlkit.table()
        new["kind"] = kind
        new["status"] = status
        if audience is not None:
            new["audience"] = audience
        if priority is not None:
            new["priority"] = priority
        if campaigns is None:
            campaigns = tomlkit.table(is_super_table=True)
            campaigns[name] = new
            doc["campaigns"] = campaigns
            campaigns.trivia.indent = ""
        else:
            campaigns[name] = new
        _settle(doc, new)
        return f"added campaign {name!r} ({kind}, {status})"

    return _edit(path, change)


def set_campaign(path: Path, name: str, assignments: list[str], *, force: bool = False) -> Outcome:
    """`KEY=VALUE` pairs on `[campaigns.NAME]`; dotted keys reach steps by name."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        camp = _campaign(doc, name, path)
        hint = f"run `campaignctl campaign show {name}` to see its steps"
        _assign_all(camp, Campaign, assignments, f"{path}: campaigns.{name}", hint)
        return f"updated campaign {name!r}: {', '.join(assignments)}"

    return _edit(path, change, force=force)


def set_status(path: Path, name: str, status: str) -> Outcome:
    """Pause (active -> paused) or resume (paused -> active) a campaign in the file."""
    moves = {"paused": ("active",), "active": ("paused",)}

    def change(doc: tomlkit.TOMLDocument) -> str:
        camp = _campaign(doc, name, path)
        current = str(camp.get("status", "draft"))
        if current == status:
            return f"campaign {name!r} is already {status}"
        if current not in moves[status]:
            only = (
                "an active campaign can be paused"
                if status == "paused"
                else ("a paused campaign can be resumed")
            )
            hint = f"to change it anyway: `campaignctl campaign set {name} status={status}`"
            if current == "draft" and status == "active":
                hint = f"a draft starts with `campaignctl campaign start {name}`"
            raise UsageError(f"{path}: campaigns.{name}: is {current}; only {only}", hint)
        _put(camp, "status", status)
        return f"campaign {name!r}: {current} -> {status}"

    return _edit(path, change)


def start_campaign(path: Path, name: str) -> Outcome:
    """Draft or paused -> active, after every check of `check`: an error leaves it unchanged."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        camp = _campaign(doc, name, path)
        current = str(camp.get("status", "draft"))
        if current == "active":
            return f"campaign {name!r} is already active"
        if current not in ("draft", "paused"):
            raise UsageError(
                f"{path}: campaigns.{name}: is {current}; only a draft or paused campaign "
                "can be started",
                f"to change it anyway: `campaignctl campaign set {name} status=active`",
            )
        steps = camp.get("steps")
        if not (_tables(steps) if steps is not None else []):
            raise UsageError(
                f"{path}: campaigns.{name}: has no steps, so starting it would send nothing",
                f"add one first: `campaignctl step add {name} --channel CH --delay 0d "
                '--body "..."`',
            )
        _put(camp, "status", "active")
        return f"campaign {name!r}: {current} -> active"

    return _edit(path, change)


def remove_campaign(path: Path, name: str, *, force: bool = False) -> Outcome:
    """Delete `[campaigns.NAME]` and its steps; refused when it has sent messages, unless forced."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        campaigns = _campaigns(doc, path)
        camp = _campaign(doc, name, path)
        if isinstance(camp, Table) and _has_header(None, camp):
            _remove_trivia(doc, camp)
        del campaigns[name]
        if not list(campaigns.keys()):
            del doc["campaigns"]
        return f"removed campaign {name!r}"

    return _edit(path, change, force=force)


# ---------------------------------------------------------------- step edits


def add_step(
    path: Path,
    campaign: str,
    *,
    channel: str,
    delay: str,
    name: str | None = None,
    subject: str | None = None,
    body: str | None = None,
    template: str | None = None,
    after: str | None = None,
    force: bool = False,
) -> Outcome:
    """Insert a `[[campaigns.C.steps]]` table at the end, or after the step named `after`.
    (`force` matters only when that renumbers unnamed steps that have sent messages.)"""
    if (body is None) == (template is None):
        raise UsageError("give exactly one of --body or --template")

    def change(doc: tomlkit.TOMLDocument) -> str:
        camp = _campaign(doc, campaign, path)
        steps = camp.get("steps")
        tables = _tables(steps) if steps else []
        existing = [_named(t, i) for i, t in enumerate(tables)]
        at = len(existing)
        if after is not None:
            at = _step(camp, campaign, after, path)[0] + 1
        if name is not None and name in existing:
            raise UsageError(
                f"{path}: campaigns.{campaign}: a step named {name!r} already exists",
                "choose another --name",
            )
        # Unnamed steps after `at` shift to a new stepN; the default name must not take
        # either their old name or their new one.
        shifted = [_named(t, i if i < at else i + 1) for i, t in enumerate(tables)]
        step_name = name or _free_name(set(existing) | set(shifted), at + 1)
        new = tomlkit.table()
        new["name"] = step_name
        new["channel"] = channel
        new["delay"] = delay
        if subject is not None:
            new["subject"] = subject
        if body is not None:
            new["body"] = tomlkit.string(body, multiline="\n" in body)
        if template is not None:
            new["template"] = _template_path(template, path)
        if isinstance(steps, Array):
            steps.insert(at, _inline_like(steps, new))
        elif isinstance(steps, AoT):
            steps.insert(at, new)
            _settle(doc, new)
        elif steps is None and isinstance(camp, Table):
            aot = tomlkit.aot()
            aot.append(new)
            camp.append("steps", aot)
            _settle(doc, new)
        else:  # a campaign written as an inline table keeps its steps inline
            _put(camp, "steps", [new.unwrap()])
        where = f"after {after!r}" if after is not None else "at the end"
        return f"added step {step_name!r} to campaign {campaign!r} {where}"

    return _edit(path, change, force=force)


def _inline_like(steps: Array, new: Table) -> Any:
    # `{ name = "a" }` or `{name = "a"}`: a new element is padded like its siblings.
    pad = " " if any(str(t.as_string()).startswith("{ ") for t in steps) else ""
    inner = ", ".join(f"{tomlkit.key(k).as_string()} = {v.as_string()}" for k, v in new.items())
    return tomlkit.parse(f"v = {{{pad}{inner}{pad}}}\n")["v"]


def _free_name(taken: set[str], n: int) -> str:
    while f"step{n}" in taken:
        n += 1
    return f"step{n}"


def _template_path(template: str, path: Path) -> str:
    # Templates are written relative to the campaign file; a path the user typed relative to
    # where they are is rewritten so the file still finds it.
    given = Path(template)
    if given.is_absolute() or not given.exists():
        return template
    return Path(os.path.relpath(given.resolve(), path.resolve().parent)).as_posix()


def remove_step(path: Path, campaign: str, step: str, *, force: bool = False) -> Outcome:
    """Delete one step; refused when the store has sent messages for it, unless forced."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        camp = _campaign(doc, campaign, path)
        i, table = _step(camp, campaign, step, path)
        steps = camp["steps"]
        if isinstance(steps, AoT):
            _remove_trivia(doc, table)
        del steps[i]
        if not _tables(steps):
            del camp["steps"]
        return f"removed step {step!r} from campaign {campaign!r}"

    return _edit(path, change, force=force)


def set_step(
    path: Path, campaign: str, step: str, assignments: list[str], *, force: bool = False
) -> Outcome:
    """`KEY=VALUE` pairs on one step; `content_variables.1=...` and `variants.A.subject=...`."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        camp = _campaign(doc, campaign, path)
        i, table = _step(camp, campaign, step, path)
        hint = f"run `campaignctl campaign show {campaign}` to see its steps"
        _assign_all(table, Step, assignments, f"{path}: campaigns.{campaign}.steps[{i}]", hint)
        return f"updated step {step!r} of campaign {campaign!r}: {', '.join(assignments)}"

    return _edit(path, change, force=force)


# ---------------------------------------------------------------- drafted variants


def _variant(table: Any, campaign: str, i: int, step: str, variant: str, path: Path) -> Any:
    return _find_named(
        table.get("variants"),
        variant,
        f"{path}: campaigns.{campaign}.steps[{i}] ({step!r})",
        "variant",
        f"list the drafts with `campaignctl draft list {campaign}`",
    )


def _draft(
    doc: tomlkit.TOMLDocument, path: Path, campaign: str, step: str, variant: str, refused: str
) -> tuple[int, int, Any, Any]:
    """(step index, variant index, step table, variant table) of a draft variant; a variant
    that is not a draft is refused with `refused` (what the command does to drafts only)."""
    camp = _campaign(doc, campaign, path)
    i, table = _step(camp, campaign, step, path)
    j, var = _variant(table, campaign, i, step, variant, path)
    if str(var.get("status", "active")) != "draft":
        raise UsageError(
            f"{path}: campaigns.{campaign}.steps[{i}].variants[{j}]: variant {variant!r} "
            f"is not a draft; {refused}"
        )
    return i, j, table, var


def add_variants(
    path: Path,
    campaign: str,
    step: str,
    drafts: list[tuple[str | None, str | None]],
    *,
    source: str,
) -> Outcome:
    """Append `[[campaigns.C.steps.variants]]` tables with `status = "draft"`, named
    `draft-1`, `draft-2`, ... (the first free names), one per (subject, body) in `drafts`."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        camp = _campaign(doc, campaign, path)
        _i, table = _step(camp, campaign, step, path)
        variants = table.get("variants")
        taken = {str(v.get("name")) for v in _tables(variants)} if variants is not None else set()
        names: list[str] = []
        n = 1
        prev: Table | None = None
        for subject, body in drafts:
            while f"draft-{n}" in taken:
                n += 1
            names.append(f"draft-{n}")
            taken.add(names[-1])
            new = tomlkit.table()
            new["name"] = names[-1]
            new["status"] = "draft"
            if subject is not None:
                new["subject"] = subject
            if body is not None:
                new["body"] = tomlkit.string(body, multiline="\n" in body)
            if isinstance(variants, AoT):
                variants.append(new)
                _settle_after(doc, prev, new)
                prev = new
            elif isinstance(variants, Array):
                variants.append(_inline_like(variants, new))
            elif variants is None and isinstance(table, Table):
                variants = tomlkit.aot()
                variants.append(new)
                table.append("variants", variants)
                _settle(doc, new)
                prev = new
            else:  # a step written as an inline table keeps its variants inline
                _put(table, "variants", [new.unwrap()])
                variants = table["variants"]
        return (
            f"added draft variant(s) {', '.join(names)} to step {step!r} of campaign "
            f"{campaign!r} (written by {source}); review them with `campaignctl preview "
            f"{campaign} --step {step} --variant {names[0]}`, then `campaignctl draft approve "
            f"{campaign} {step} NAME` or `draft reject`"
        )

    return _edit(path, change)


def _settle_after(doc: tomlkit.TOMLDocument, prev: Table | None, new: Table) -> None:
    """`_settle` for a table appended right after `prev`, a table this edit added and settled:
    the comments `_settle` moved below `prev` (they introduce what follows) move below `new`."""
    if prev is None:
        _settle(doc, new)
        return
    new.trivia.indent = ""
    body = prev.value.body
    if body and body[-1][0] is None and isinstance(body[-1][1], Whitespace):
        tail = body[-1][1].as_string()
        body[-1] = (None, Whitespace("\n"))
        new.add(Whitespace(tail))
    else:
        prev.add(Whitespace("\n"))


def approve_variant(path: Path, campaign: str, step: str, variant: str) -> Outcome:
    """A draft variant becomes one the engine may choose (its `status` key is removed), after
    `check` finds no error in it as a draft (a dropped merge field or opt-out wording)."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        i, j, _table, var = _draft(doc, path, campaign, step, variant, "it is already sent")
        # Approving lifts the rules only drafts have: check it as it stands first.
        vp = f"campaigns.{campaign}.steps[{i}].variants[{j}]"
        errors = [
            p
            for p in check_text(doc.as_string(), path).errors
            if p.path == vp or p.path.startswith((vp + ".", vp + "["))
        ]
        if errors:
            raise ConfigError(
                errors,
                f"fix it in {path.name}, or remove it with "
                f"`campaignctl draft reject {campaign} {step} {variant}`; nothing was changed",
            )
        del var["status"]
        return f"approved variant {variant!r} of step {step!r} of campaign {campaign!r}"

    return _edit(path, change)


def reject_variant(path: Path, campaign: str, step: str, variant: str) -> Outcome:
    """Remove a draft variant (only a draft: a variant in use is changed with `step set`)."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        _i, j, table, var = _draft(
            doc, path, campaign, step, variant, "`draft reject` removes drafts only"
        )
        variants = table["variants"]
        if isinstance(variants, AoT):
            _remove_trivia(doc, var)
        del variants[j]
        if not _tables(variants):
            del table["variants"]
        return f"removed draft variant {variant!r} of step {step!r} of campaign {campaign!r}"

    return _edit(path, change)


# ---------------------------------------------------------------- channel edits


def set_channel(path: Path, name: str, assignments: list[str]) -> Outcome:
    """`KEY=VALUE` pairs on `[channels.NAME]`, checked against that provider's keys."""

    def change(doc: tomlkit.TOMLDocument) -> str:
        channels = doc.get("channels") or {}
        if name not in channels:
            raise NotFoundError(
                f"{path}: no channel named {name!r}{did_you_mean(name, list(channels.keys()))}",
                "channels are the [channels.NAME] tables of the campaign file",
            )
        table = channels[name]
        provider = str(table.get("provider", ""))
        for parts, raw in map(split_assignment, assignments):
            if parts == ["provider"]:
                provider = str(parse_value(raw))
        model = _channel_models().get(provider, ChannelBase)
        _assign_all(table, model, assignments, f"{path}: channels.{name}", None)
        return f"updated channel {name!r}: {', '.join(assignments)}"

    return _edit(path, change)


# ---------------------------------------------------------------- the store


def sent_messages(cfg: Config, campaign: str, step: str | None = None) -> int:
    """Messages already sent for a campaign (or one step of it). Never creates a database."""
    from campaignctl.store import messages

    return messages.sent_in(cfg.database_url(), campaign, step)


def _step_names(data: dict[str, Any]) -> dict[str, list[str]]:
    """Campaign -> step names (`stepN` where unnamed) from parsed TOML, however malformed."""
    out: dict[str, list[str]] = {}
    campaigns = data.get("campaigns")
    for cname, camp in campaigns.items() if isinstance(campaigns, dict) else []:
        steps = camp.get("steps") if isinstance(camp, dict) else None
        out[cname] = [
            str(s.get("name") or f"step{i + 1}") if isinstance(s, dict) else f"step{i + 1}"
            for i, s in enumerate(steps if isinstance(steps, list) else [])
        ]
    return out


def _refuse_to_orphan_sent(cfg: Config, before: dict[str, list[str]]) -> None:
    """Sent messages are recorded by campaign and step name. An edit that removes or renames
    (or, by moving an unnamed step, renumbers) one that has sends needs --force."""
    for campaign, steps in before.items():
        if campaign not in cfg.campaigns:
            gone: list[str | None] = [None]
        else:
            after = {s.name for s in cfg.campaigns[campaign].steps}
            gone = [s for s in steps if s not in after]
        for step in gone:
            count = sent_messages(cfg, campaign, step)
            if not count:
                continue
            what = (
                f"campaign {campaign!r}"
                if step is None
                else f"step {step!r} of campaign {campaign!r}"
            )
            how = "removes" if step is None else "removes or renames"
            raise UsageError(
                f"{cfg.path}: {what} already has {count} sent message(s) in the store, and this "
                f"edit {how} it; nothing was changed",
                "add --force to go ahead: the sent messages stay recorded under the old name "
                "(a renamed step counts as new, so its leads would get it again)",
            )


# ---------------------------------------------------------------- views for list and show


def campaign_rows(cfg: Config) -> list[dict[str, Any]]:
    """One row per campaign: what `campaign list` shows (and prints as JSON)."""
    rows = []
    for name, camp in cfg.campaigns.items():
        channels = list(dict.fromkeys(s.channel for s in camp.steps))
        rows.append(
            {
                "name": name,
                "kind": camp.kind,
                "status": camp.status,
                "priority": camp.priority,
                "audience": camp.audience,
                "steps": len(camp.steps),
                "channels": channels,
            }
        )
    return rows


def campaign_detail(cfg: Config, name: str) -> dict[str, Any]:
    """A campaign's settings and its steps, for `campaign show`."""
    from campaignctl.timespec import format_duration

    camp = cfg.campaign(name)
    steps = []
    for step in camp.steps:
        first_body = (step.body or "").strip().splitlines()
        steps.append(
            {
                "name": step.name,
                "channel": step.channel,
                "delay": format_duration(step.delay),
                "subject": step.subject,
                "content": step.subject
                or (first_body[0] if first_body else None)
                or (f"template {step.template}" if step.template else None)
                or (f"content_sid {step.content_sid}" if step.content_sid else ""),
                "variants": [v.name for v in step.variants],
            }
        )
    return {
        "name": name,
        "kind": camp.kind,
        "status": camp.status,
        "priority": camp.priority,
        "audience": camp.audience,
        "description": camp.description,
        "stop_on": list(camp.stop_on),
        "start_at": camp.start_at,
        "steps": steps,
    }
