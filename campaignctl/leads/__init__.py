"""Leads from CSV files: reading, column mapping, normalisation, deduplication, listing.

An import streams the file: it is cut into chunks of whole records, workers parse and
normalise them (email-validator and phonenumbers cost tens of microseconds a row), and the
rows are inserted in file order with `ON CONFLICT DO NOTHING`, so the unique email and phone
indexes find the duplicates; one `BEGIN IMMEDIATE` transaction per `COMMIT_ROWS` rows. With
workers, all of that runs in an import process of its own, started from the forkserver,
which has loaded only this module. Memory stays flat whatever the file size; a killed import
leaves whole transactions behind, and importing the file again completes it (duplicates are
counted, never inserted twice).

This module is also what the import and worker processes load, so it imports no SQL or CLI
code at the top.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from campaignctl.audience import FIXED_FIELDS
from campaignctl.errors import CampaignctlError

if TYPE_CHECKING:
    from campaignctl.config import Config
    from campaignctl.store import Store
    from campaignctl.store.sqlite import RawConnection

#: Lead fields a CSV column can fill; `country` only helps read phone numbers (and is kept).
MAPPABLE = (*(f for f in FIXED_FIELDS if f != "status"), "country")

# Header spellings that map by themselves, compared after `_header_key` (lower case, letters and
# digits only). Earlier spellings win when a file has several: `Phone 1` before `Mobile`.
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "email1", "primaryemail", "mail"),
    "phone": (
        "phone",
        "phonenumber",
        "phone1",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "cell",
        "cellphone",
        "cellnumber",
        "telephone",
        "tel",
    ),
    "first_name": ("firstname", "first", "givenname", "fname", "forename"),
    "last_name": ("lastname", "last", "surname", "familyname", "lname"),
    "timezone": ("timezone", "tz", "tzname"),
    "tags": ("tags", "tag", "labels"),
    "country": ("country", "countryname", "countrycode"),
}

# Attribute names that would hide a lead field in templates, `--where` or `leads list`.
RESERVED = (*FIXED_FIELDS, "optouts", "id", "lead", "attrs")

SAMPLE_BYTES = 64 * 1024
SCAN_BYTES = 1024 * 1024
BATCH_ROWS = 2500  # lines per chunk handed to a worker
COMMIT_ROWS = 20000  # rows per write transaction
# Below this size the start-up of worker processes costs more than it saves.
PARALLEL_BYTES = 4 * 1024 * 1024
NOTES_KEPT = 1000
WORKERS_ENV = "CAMPAIGNCTL_IMPORT_WORKERS"


class LeadsInputError(CampaignctlError):
    """A CSV file that cannot be imported at all (nothing is written)."""


# ---------------------------------------------------------------- reading the file


@dataclass(frozen=True)
class CsvFormat:
    """How to read a CSV file: encoding, delimiter, and a warning when the encoding is a guess."""

    path: Path
    encoding: str
    delimiter: str
    size: int
    warning: str | None = None

    def open(self) -> TextIO:
        return open(self.path, encoding=self.encoding, newline="")


_MAP_HINT = "campaignctl leads import {path} --map email=COLUMN"


def inspect_csv(path: Path, encoding: str | None = None) -> CsvFormat:
    """Check that `path` is a readable, non-empty text CSV; find its encoding and delimiter.

    `encoding` (`--encoding`) is used as given; otherwise a BOM decides, then strict UTF-8,
    then a guess (`_guess_encoding`) that comes with a warning showing the first value with
    letters outside ASCII, as read.
    """
    if encoding is not None:
        encoding = check_encoding(encoding)
    try:
        if path.is_dir():
            raise LeadsInputError(
                f"{path}: is a directory, not a CSV file",
                "give the CSV file itself: campaignctl leads import leads.csv",
            )
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(SAMPLE_BYTES)
    except FileNotFoundError:
        raise LeadsInputError(
            f"{path}: no such file", "check the path (it is relative to -C DIR when given)"
        ) from None
    except OSError as exc:
        raise LeadsInputError(f"{path}: cannot read: {exc.strerror}") from None
    if not head.strip():
        raise LeadsInputError(
            f"{path}: the file is empty",
            "export the leads with a header row first, e.g. email,first_name,phone",
        )
    guessed = False
    if encoding is not None:
        if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"
        if not _decodes(path, encoding):
            raise LeadsInputError(
                f"{path}: not {encoding} text (--encoding {encoding})",
                "give the encoding the file was saved in, or leave --encoding out to guess it",
            )
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # Excel's "Unicode text"; the BOM says it, no guessing
    elif head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        if head.startswith(b"PK\x03\x04") or b"\0" in head:
            kind = "a spreadsheet or zip file" if head.startswith(b"PK") else "a binary file"
            raise LeadsInputError(
                f"{path}: {kind}, not a CSV text file",
                "export it as CSV (in Excel: File > Save As > CSV UTF-8)",
            )
        encoding = "utf-8"
        if not _decodes(path, "utf-8"):
            encoding, guessed = _guess_encoding(path), True
    text = _head_text(head, encoding)
    delimiter = _sniff_delimiter(text)
    warning = _guess_warning(path, encoding, delimiter) if guessed else None
    return CsvFormat(path, encoding, delimiter, size, warning)


def check_encoding(name: str) -> str:
    """`--encoding`: the codec's canonical name (`latin-1` -> `iso8859-1`), or a usage error."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise LeadsInputError(
            f"--encoding {name!r}: unknown encoding",
            "use a Python codec name such as utf-8, cp1252, latin-1, cp1250 or cp1251",
        ) from None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13: codecs, not text
        raise LeadsInputError(f"--encoding {name!r}: not a text encoding")
    try:  # `undefined` looks up, then refuses every use (an empty bytes.decode never asks it)
        codecs.getincrementaldecoder(info.name)().decode(b"")
    except (UnicodeError, LookupError) as exc:
        raise LeadsInputError(f"--encoding {name!r}: cannot decode with it ({exc})") from None
    return info.name


def _guess_warning(path: Path, encoding: str, delimiter: str) -> str:
    """The guess, with the first value outside ASCII as read, so a person can judge it."""
    where = ""
    with open(path, encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        line = 1
        try:
            for row in reader:
                value = next((v for v in row if not v.isascii()), None)
                if value is not None:
                    shown = value if len(value) <= 60 else value[:59] + "…"
                    where = f"; line {line}: {shown!r}"
                    break
                line = reader.line_num + 1
        except csv.Error:
            pass  # the import reports it with its line
    return (
        f"{path}: not UTF-8; read as {encoding} (guessed){where} — if that looks wrong, "
        "rerun with --encoding ENCODING (e.g. cp1250, cp1251, mac-roman)"
    )


def _decodes(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes strictly; NUL bytes anywhere make it a binary file."""
    decoder = codecs.getincrementaldecoder(encoding)()
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    with open(path, "rb") as fh:
        while chunk := fh.read(SCAN_BYTES):
            if b"\0" in chunk and not wide:  # csv cannot read them; no text file has them
                raise LeadsInputError(
                    f"{path}: a binary file (NUL bytes), not a CSV text file",
                    "export it as CSV (in Excel: File > Save As > CSV UTF-8)",
                )
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


#: Encodings that spreadsheets and CRMs still export, for the guess below; charset-normalizer
#: also ranks DOS, Mac and rare ISO 8859 codepages (cp775, cp850, mac_latin2...) first on short
#: samples, which read "José Muñoz" as "Josķ Mu±oz".
COMMON_ENCODINGS = frozenset(
    {
        *(f"cp{n}" for n in range(1250, 1259)),
        *(f"iso8859_{n}" for n in (1, 2, 5, 7, 9, 15)),
        "koi8_r",
        "koi8_u",
        "cp874",
        "shift_jis",
        "cp932",
        "euc_jp",
        "gb2312",
        "gbk",
        "gb18030",
        "big5",
        "cp949",
        "euc_kr",
    }
)


def _guess_encoding(path: Path) -> str:
    """The encoding of a file that is not UTF-8, judged on its first MiB.

    cp1252 (Windows' Western European, a superset of Latin-1 for text) when it reads the sample
    as cleanly as charset-normalizer's best guess: a single accented name fits a dozen
    codepages, and Western spreadsheets are by far the most common non-UTF-8 files. Otherwise
    the best guess, passing over rare codepages for a common one that reads nearly as well.
    The caller shows a sample value read this way; `--encoding` settles any doubt.
    """
    from charset_normalizer import from_bytes

    with open(path, "rb") as fh:
        sample = fh.read(SCAN_BYTES)
    matches = list(from_bytes(sample))
    if matches:
        best = matches[0]
        clean = min(m.chaos for m in matches)
        if any(
            "cp1252" in (m.encoding, *m.could_be_from_charset) and m.chaos <= clean for m in matches
        ):
            choices = ["cp1252"]
        else:
            common = [
                m.encoding
                for m in matches
                if m.encoding in COMMON_ENCODINGS and m.chaos <= best.chaos + 0.1
            ]
            choices = [*common[:1], best.encoding]
        for encoding in choices:
            if _decodes(path, encoding):
                return encoding
    raise LeadsInputError(
        f"{path}: unknown text encoding (not UTF-8, and no other encoding reads it)",
        f"give it with --encoding, or convert it to UTF-8: iconv -f LATIN1 -t UTF-8 {path} "
        "> leads-utf8.csv",
    )


def _head_text(head: bytes, encoding: str) -> str:
    text = codecs.getincrementaldecoder(encoding)(errors="ignore").decode(head)
    cut = text.rfind("\n")
    return text[: cut + 1] if cut > 0 else text


def _sniff_delimiter(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text, delimiters=",;\t|").delimiter
    except csv.Error:  # one column, or too little text to tell
        return ","


# ---------------------------------------------------------------- columns


def _header_key(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def snake_case(name: str) -> str:
    """`Phone 2` -> `phone_2`, `Subscription Date` -> `subscription_date`, `CustomerID` -> ..."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"\W+", "_", s).strip("_").lower()


@dataclass(frozen=True)
class ColumnMap:
    """Which column fills which lead field, and the attribute name of every other column."""

    header: tuple[str, ...]
    fields: Mapping[str, int]
    attrs: tuple[tuple[int, str], ...]

    def column(self, lead_field: str) -> str | None:
        i = self.fields.get(lead_field)
        return None if i is None else self.header[i]


def parse_mapping(specs: Iterable[str]) -> dict[str, str]:
    """`["email=E-mail Address"]` -> `{"email": "E-mail Address"}`, checking field names."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, column = spec.partition("=")
        name = name.strip().lower().replace("-", "_")
        if not sep or not name or not column.strip():
            raise LeadsInputError(
                f"--map {spec!r}: expected FIELD=COLUMN", "for example: --map email='E-mail 1'"
            )
        if name not in MAPPABLE:
            raise LeadsInputError(
                f"--map {spec!r}: unknown field {name!r}",
                "fields that can be mapped: " + ", ".join(MAPPABLE),
            )
        out[name] = column.strip()
    return out


def map_columns(header: Sequence[str], mapping: Mapping[str, str], path: Path) -> ColumnMap:
    """Map a CSV header to lead fields: `--map` first, then the usual header spellings."""
    keys = [_header_key(h) for h in header]
    seen = ", ".join(repr(h) for h in header)
    fields: dict[str, int] = {}
    for name, column in mapping.items():
        idx = next((i for i, h in enumerate(header) if h.strip() == column), None)
        if idx is None:
            idx = next((i for i, k in enumerate(keys) if k == _header_key(column)), None)
        if idx is None:
            raise LeadsInputError(
                f"--map {name}={column}: {path} has no column {column!r}; its columns: {seen}",
                "use one of the columns above, spelled as in the header",
            )
        fields[name] = idx
    for name, aliases in ALIASES.items():
        if name in fields:
            continue
        for alias in aliases:
            idx = next(
                (i for i, k in enumerate(keys) if k == alias and i not in fields.values()), None
            )
            if idx is not None:
                fields[name] = idx
                break
    if "email" not in fields and "phone" not in fields:
        raise LeadsInputError(
            f"{path}: no email or phone column; its columns: {seen}",
            _MAP_HINT.format(path=path) + " (or --map phone=COLUMN)",
        )
    # Every column not mapped to a fixed field stays as an attribute; so does the country.
    kept = {i for f, i in fields.items() if f != "country"}
    used: set[str] = set(RESERVED)
    attrs: list[tuple[int, str]] = []
    for i, h in enumerate(header):
        if i in kept:
            continue
        base = snake_case(h) or f"column_{i + 1}"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name)
        attrs.append((i, name))
    return ColumnMap(tuple(header), fields, tuple(attrs))


# ---------------------------------------------------------------- normalising one row

# The dot-atom local parts email-validator accepts without further ado; anything else (quoted,
# internationalised, odd) goes through email-validator in full.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@lru_cache(maxsize=65536)
def _email_domain(domain: str) -> str | None:
    """The normalised domain when email-validator accepts it (cached: domains repeat a lot)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email("x@" + domain, check_deliverability=False).domain
    except EmailNotValidError:
        return None


def normalise_email(value: str) -> tuple[str | None, str | None]:
    """(normalised address in lower case, None) or (None, why it is not valid). No DNS."""
    at = value.rfind("@")
    if at > 0 and len(value) <= 254 and at <= 64 and _PLAIN_LOCAL.fullmatch(value, 0, at):
        domain = _email_domain(value[at + 1 :])
        if domain is not None:
            return (value[:at] + "@" + domain).lower(), None
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(value, check_deliverability=False).normalized.lower(), None
    except EmailNotValidError as exc:
        return None, str(exc)


_PLAIN_PHONE = re.compile(r"\+?[0-9 ().\t-]+")
_SEPARATORS = str.maketrans("", "", " ().\t-")


@lru_cache(maxsize=1024)
def country_region(country: str) -> str | None:
    """The phonenumbers region of a country name or code (`Antigua and Barbuda` -> `AG`)."""
    import phonenumbers
    import pycountry

    value = country.strip()
    if not value:
        return None
    if len(value) == 2 and value.upper() in phonenumbers.SUPPORTED_REGIONS:
        return value.upper()
    try:
        code = str(pycountry.countries.lookup(value).alpha_2)
    except LookupError:
        return None
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def normalise_phone(value: str, region: str | None) -> tuple[str | None, str | None, str | None]:
    """(E.164, extension dropped, None) or (None, None, why it is not a valid number)."""
    import phonenumbers

    if _PLAIN_PHONE.fullmatch(value):
        # phonenumbers drops these separators itself, but slowly: "(415) 555-0132" costs it
        # half again as much as "4155550132". Only digits and separators qualify, so
        # extensions, letters and second numbers still reach phonenumbers as written.
        value = value.translate(_SEPARATORS)
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None, None, f"not a phone number{_where(region)}"
    # Checking the expected region first is much cheaper than is_valid_number, which tries
    # every region of the country code (25 for +1) before it can say yes.
    valid = (
        region is not None
        and number.country_code == _region_code(region)
        and phonenumbers.is_valid_number_for_region(number, region)
    ) or (phonenumbers.is_possible_number(number) and phonenumbers.is_valid_number(number))
    if not valid:
        return None, None, f"not a valid number{_where(region)}"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, number.extension or None, None


def _where(region: str | None) -> str:
    return f" for {region}" if region else " (no country code, and no default region)"


@lru_cache(maxsize=512)
def _region_code(region: str) -> int:
    import phonenumbers

    return int(phonenumbers.country_code_for_region(region))


@lru_cache(maxsize=1024)
def valid_timezone(name: str) -> bool:
    """Whether `name` is an IANA time zone zoneinfo knows."""
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError on odd names
        return False
    return True


_TAG_SPLIT = re.compile(r"[;,]")


class Parsed(NamedTuple):
    """One CSV record, normalised; `reject` is set when it has no valid contact."""

    line: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    tags: str  # JSON array, as stored
    attrs: str  # JSON object, as stored
    notes: tuple[str, ...]
    dropped: int
    reject: str | None
    raw: list[str] | None = None  # the CSV fields, kept only when there is something to say


_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The string quoting `_to_json` itself uses (C). Lists and objects of strings are joined here
# with it, to the same text: `JSONEncoder.encode` builds a new C encoder on every call, which
# was a third of a row's cost outside email-validator and phonenumbers.
_quote = json.encoder.encode_basestring


def json_strings(values: Iterable[str]) -> str:
    """`_to_json(list(values))` for strings, faster."""
    return "[" + ",".join(map(_quote, values)) + "]"


def json_string_object(pairs: Mapping[str, str]) -> str:
    """`_to_json(dict(pairs))` for string keys and values, faster."""
    return "{" + ",".join([_quote(k) + ":" + _quote(v) for k, v in pairs.items()]) + "}"


class Normaliser:
    """Turns raw CSV records into `Parsed` rows; picklable, so workers get a copy.

    Written for speed (it runs once per row of files with millions): column indexes are
    resolved once, and rows are padded to the header's width instead of checked field by field.
    """

    def __init__(
        self,
        columns: ColumnMap,
        default_region: str | None = None,
        extra_tags: Sequence[str] = (),
        *,
        source: str = "",
        delimiter: str = ",",
    ) -> None:
        self.columns = columns
        self.source = source
        self.delimiter = delimiter
        self.default_region = default_region
        self.extra_tags = tuple(extra_tags)
        self.width = len(columns.header)
        self.padding = [""] * self.width
        f = columns.fields
        self.email, self.phone, self.country = f.get("email"), f.get("phone"), f.get("country")
        self.first, self.last = f.get("first_name"), f.get("last_name")
        self.tz, self.tags = f.get("timezone"), f.get("tags")
        self.attrs = columns.attrs
        self.no_tags = _to_json(list(self.extra_tags))

    def records(self, chunk: Chunk) -> Iterator[tuple[int, list[str]]]:
        """(first physical line, fields) of each non-blank record of a chunk of the file."""
        first, text, _done = chunk
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter)
        prev = 0
        try:
            for row in reader:
                start, prev = prev + 1, reader.line_num
                if any(row):
                    yield first + start - 1, row
        except csv.Error as exc:
            line = first + reader.line_num - 1
            raise LeadsInputError(f"{self.source}:{line}: unreadable CSV: {exc}") from None

    def chunk(self, chunk: Chunk) -> list[Parsed]:
        return [self.row(line, raw) for line, raw in self.records(chunk)]

    def row(self, line: int, raw: list[str]) -> Parsed:
        n = len(raw)
        notes: list[str] = []
        if n != self.width:
            if n > self.width and any(raw[self.width :]):
                notes.append(f"{n} fields but the header has {self.width}; extra ignored")
            raw = (raw + self.padding)[: self.width]
        problems: list[str] = []
        dropped = 0
        email = phone = None
        email_raw = raw[self.email].strip() if self.email is not None else ""
        if email_raw:
            email, why = normalise_email(email_raw)
            if why:
                problems.append(f"email {email_raw!r} is not valid: {why}")
        phone_raw = raw[self.phone].strip() if self.phone is not None else ""
        if phone_raw:
            region = self.default_region
            if self.country is not None and (country := raw[self.country].strip()):
                region = country_region(country) or region
            phone, ext, why = normalise_phone(phone_raw, region)
            if why:
                problems.append(f"phone {phone_raw!r} is {why}")
            elif ext:
                notes.append(f"phone {phone_raw!r}: extension x{ext} dropped")
                dropped += 1
        if email is None and phone is None:
            reason = "; ".join(problems) if problems else "no email and no phone"
            return Parsed(line, None, None, None, None, None, "[]", "{}", (), 0, reason, raw)
        for problem in problems:
            notes.append(f"{problem}; dropped")
            dropped += 1
        tz = raw[self.tz].strip() or None if self.tz is not None else None
        if tz is not None and not valid_timezone(tz):
            notes.append(f"timezone {tz!r} is not an IANA time zone; dropped")
            dropped += 1
            tz = None
        tags = self.no_tags
        if self.tags is not None and (tag_text := raw[self.tags].strip()):
            found = dict.fromkeys([t.strip() for t in _TAG_SPLIT.split(tag_text)])
            found.pop("", None)
            if self.extra_tags:
                found.update(dict.fromkeys(self.extra_tags))
            tags = json_strings(found)
        attrs = {name: value for i, name in self.attrs if (value := raw[i].strip())}
        return Parsed(
            line,
            email,
            phone,
            raw[self.first].strip() or None if self.first is not None else None,
            raw[self.last].strip() or None if self.last is not None else None,
            tz,
            tags,
            json_string_object(attrs),
            tuple(notes),
            dropped,
            None,
            raw if notes else None,
        )


# ---------------------------------------------------------------- chunks and workers

Chunk = tuple[int, str, int]  # first line, text of whole records, bytes of the file read so far


def _chunks(fh: TextIO, first_line: int) -> Iterator[Chunk]:
    """The rest of the file as text chunks of about `BATCH_ROWS` lines, cut between records.

    Cutting needs no CSV parsing: a line ends a record when the quotes seen so far are even.
    Workers parse the chunks, so this process only moves text.
    """
    buffer = fh.buffer
    lines: list[str] = []
    quotes = 0
    start = first_line
    for line in fh:
        lines.append(line)
        quotes += line.count('"')
        if len(lines) >= BATCH_ROWS and not quotes % 2:
            yield start, "".join(lines), buffer.tell()
            start += len(lines)
            lines, quotes = [], 0
    if lines:
        yield start, "".join(lines), buffer.tell()


_worker: Normaliser | None = None


def _init_worker(normaliser: Normaliser) -> None:
    global _worker
    _worker = normaliser


def _work(chunk: Chunk) -> list[tuple[Any, ...]]:
    assert _worker is not None
    # Plain tuples: they cross the process boundary several times faster than named ones.
    return [tuple(p) for p in _worker.chunk(chunk)]


def _normalised(
    normaliser: Normaliser, chunks: Iterator[Chunk], workers: int
) -> Generator[tuple[Chunk, list[Parsed]], None, None]:
    """Normalise chunks in order, in `workers` processes (0: in this one)."""
    if workers <= 0:
        for chunk in chunks:
            yield chunk, normaliser.chunk(chunk)
        return
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor

    # forkserver: workers start from a small clean process, not a copy of this one (smaller,
    # and safe next to the progress bar's thread). A worker that dies raises BrokenProcessPool
    # here instead of hanging the import.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["campaignctl.leads"])
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(normaliser,)
    )
    try:
        # A bounded window of chunks in flight keeps memory flat and the order of lines.
        pending: deque[tuple[Chunk, Future[list[tuple[Any, ...]]]]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_work, chunk)))
            if len(pending) >= 2 * workers:
                done, result = pending.popleft()
                yield done, [Parsed._make(t) for t in result.result()]
        while pending:
            done, result = pending.popleft()
            yield done, [Parsed._make(t) for t in result.result()]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- the import


@dataclass(frozen=True)
class Note:
    """Something said about one CSV line: a dropped field, or why the row was rejected."""

    line: int
    message: str
    rejected: bool = False

    def __str__(self) -> str:
        return f"line {self.line}: {'rejected: ' if self.rejected else ''}{self.message}"


@dataclass
class ImportReport:
    """What an import did; `notes` keeps the first `NOTES_KEPT`, `notes_total` counts all."""

    path: Path
    dry_run: bool = False
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    fields_dropped: int = 0
    rejected: int = 0
    notes: list[Note] = field(default_factory=list)
    notes_total: int = 0
    warnings: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    rejects_path: Path | None = None

    def note(self, note: Note) -> None:
        self.notes_total += 1
        if len(self.notes) < NOTES_KEPT:
            self.notes.append(note)


def claim(p: Parsed, emails: set[str], phones: set[str]) -> Parsed | None:
    """Apply the identity rules to a valid row, given the emails and phones already taken.

    A lead is its email when it has one, else its phone: None means a duplicate. A new lead
    whose phone already belongs to another one keeps its email and loses the phone (noted).
    The sets are updated with what the row takes.
    """
    if p.email is None:
        if p.phone is None or p.phone in phones:
            return None
        phones.add(p.phone)
        return p
    if p.email in emails:
        return None
    emails.add(p.email)
    if p.phone is not None:
        if p.phone in phones:
            note = f"phone {p.phone} already belongs to another lead; dropped"
            return p._replace(phone=None, notes=(*p.notes, note), dropped=p.dropped + 1)
        phones.add(p.phone)
    return p


class _Writer:
    """Deduplicates chunks against the database and inserts them through raw sqlite3."""

    def __init__(
        self,
        conn: RawConnection,
        normaliser: Normaliser,
        report: ImportReport,
        rejects: _Rejects | None,
        *,
        now: datetime,
        dry_run: bool,
    ) -> None:
        self.conn = conn
        self.normaliser = normaliser
        self.report = report
        self.rejects = rejects
        self.dry_run = dry_run
        from campaignctl.store.sqlite import LeadInserts

        self.db = LeadInserts(conn, now)
        self.uncommitted = 0
        self.in_transaction = False

    def _begin(self) -> None:
        if not self.in_transaction:
            self.db.begin()
            self.in_transaction = True

    def _end(self, commit: bool) -> None:
        if self.in_transaction:
            self.in_transaction = False
            self.uncommitted = 0
            if commit:
                self.db.commit()
            else:
                self.db.rollback()

    def _conflict(self, p: Parsed) -> Parsed | None:
        """`claim` for a row the unique indexes refused: None for a duplicate, else the row
        without its phone (the email is new, so the phone was the taken value)."""
        emails: set[str] = set()
        if p.email is not None and p.phone is not None:
            if self.db.email_taken(p.email):
                emails.add(p.email)
        else:  # a lone email or a lone phone can only conflict with itself
            return None
        return claim(p, emails, {p.phone})

    def _reject(self, chunk: Chunk, p: Parsed, reason: str) -> None:
        if self.rejects is None:
            return
        raw = p.raw
        if raw is None:  # a note added here, not by the worker: read the line again
            raw = next(r for line, r in self.normaliser.records(chunk) if line == p.line)
        self.rejects.write(raw, p.line, reason)

    def write(self, chunk: Chunk, parsed: list[Parsed]) -> None:
        """Insert a chunk's new leads; commits every `COMMIT_ROWS` rows (never in a dry run).

        Rows go in one by one, in file order, with `ON CONFLICT DO NOTHING`: the unique email
        and phone indexes find duplicates while inserting, so no lookup precedes the insert
        (a lookup per chunk cost about a third of this process's CPU on 1M rows). Only a
        refused row is looked at again (`_conflict`), to apply `claim`'s rules.
        """
        report = self.report
        self._begin()
        insert = self.db.insert
        inserted = 0
        try:
            for row in parsed:
                if row.reject is not None:
                    report.rejected += 1
                    report.note(Note(row.line, row.reject, rejected=True))
                    self._reject(chunk, row, row.reject)
                    continue
                p = row
                if not insert(p[1:8]).rowcount:  # email ... attrs
                    again = self._conflict(row)
                    if again is None:
                        report.duplicates += 1
                        continue
                    p = again
                    insert(p[1:8])
                inserted += 1
                report.fields_dropped += p.dropped
                if p.notes:
                    reason = "; ".join(p.notes)
                    report.note(Note(p.line, reason))
                    self._reject(chunk, p, "imported; " + reason)
        except BaseException:
            self.abort()
            raise
        report.read += len(parsed)
        report.inserted += inserted
        self.uncommitted += len(parsed)
        if self.uncommitted >= COMMIT_ROWS and not self.dry_run:
            self._end(commit=True)

    def finish(self) -> None:
        """Commit what is left (a dry run rolls everything back)."""
        self._end(commit=not self.dry_run)

    def abort(self) -> None:
        """Roll back the open transaction; earlier commits stay (importing again completes)."""
        self._end(commit=False)


class _Rejects:
    """The `--rejects` CSV: the original columns, then `line` and `reason`."""

    def __init__(self, path: Path, header: Sequence[str], delimiter: str) -> None:
        try:
            # Held open for the whole import, closed by `close()`.
            self.fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise LeadsInputError(f"--rejects {path}: cannot write: {exc.strerror}") from None
        self.width = len(header)
        self.csv = csv.writer(self.fh, delimiter=delimiter)
        self.csv.writerow([*header, "line", "reason"])

    def write(self, raw: list[str], line: int, reason: str) -> None:
        cells = raw[: self.width] + [""] * (self.width - len(raw))
        self.csv.writerow([*cells, line, reason])

    def close(self) -> None:
        self.fh.close()


@dataclass(frozen=True)
class _Source:
    """A checked CSV file, where its records start, and the normaliser for its columns.

    Holds no open file, so it can be sent to the import process; `chunks()` opens the file.
    """

    fmt: CsvFormat
    first_line: int  # of the first record after the header
    normaliser: Normaliser

    def chunks(self) -> Generator[Chunk, None, None]:
        with self.fmt.open() as fh:
            # Skip the header as it was read: the file's lines, as `_chunks` counts them.
            for _ in range(self.first_line - 1):
                fh.readline()
            yield from _chunks(fh, self.first_line)


def _open_source(
    path: Path,
    mapping: Sequence[str],
    default_region: str | None,
    tags: Sequence[str] = (),
    encoding: str | None = None,
) -> _Source:
    """Check the file and map its columns; raises LeadsInputError before anything is written."""
    fmt = inspect_csv(path, encoding)
    overrides = parse_mapping(mapping)
    with fmt.open() as fh:
        reader = csv.reader(fh, delimiter=fmt.delimiter)
        try:
            header = next((row for row in reader if any(row)), None)
        except csv.Error as exc:
            raise LeadsInputError(f"{path}:{reader.line_num}: unreadable CSV: {exc}") from None
    if header is None:
        raise LeadsInputError(
            f"{path}: the file is empty", "export the leads with a header row first"
        )
    columns = map_columns([h.strip() for h in header], overrides, path)
    extra = tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))
    normaliser = Normaliser(
        columns, default_region, extra, source=str(path), delimiter=fmt.delimiter
    )
    return _Source(fmt, reader.line_num + 1, normaliser)


def import_leads(
    path: Path,
    cfg: Config,
    open_store: Callable[[], Store],
    *,
    mapping: Sequence[str] = (),
    tags: Sequence[str] = (),
    rejects: Path | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    encoding: str | None = None,
) -> ImportReport:
    """Import a CSV file of leads; returns what was read, inserted, dropped and rejected.

    The file is checked (and the columns mapped) before the database is opened, so bad input
    touches nothing. `workers` defaults to one process per CPU for files big enough to gain;
    with workers, the import itself runs in a separate lean process (see `_ImportJob`).
    `progress(bytes_done, bytes_total)` is called after each chunk. `encoding` is the file's
    (`--encoding`); None finds it (see `inspect_csv`). The import process reads the file with
    the encoding decided here: it travels in the job's `CsvFormat`.
    """
    src = _open_source(path, mapping, cfg.settings.default_region, tags, encoding)
    columns = src.normaliser.columns
    report = ImportReport(path, dry_run=dry_run, rejects_path=rejects)
    report.warnings.extend([src.fmt.warning] if src.fmt.warning else [])
    report.columns = {f: columns.header[i] for f, i in columns.fields.items()}
    report.attributes = [name for _, name in columns.attrs]
    if workers is None:
        workers = _workers_for(src.fmt.size)
    # The Store creates and migrates the database; the import writes through plain sqlite3.
    if dry_run:
        from campaignctl.store import Store

        store = Store.for_reading(cfg)  # the real one counts duplicates; none creates no file
        database = _database_of(store)
        store.close()
    else:
        database = _database_of(open_store())
    job = _ImportJob(src, report, database, rejects, dry_run, now or datetime.now(UTC), workers)
    return job.run_elsewhere(progress) if workers > 0 else job.run(progress)


@dataclass(frozen=True)
class _Database:
    """Where an import writes: a SQLite file, or `:memory:` built from `schema` (a dry run
    without a database file, so that it creates nothing)."""

    path: str
    schema: tuple[str, ...] = ()

    def connect(self) -> RawConnection:
        from campaignctl.store.sqlite import connect_raw

        # The Store's settings; BEGIN is issued by `_Writer`.
        return connect_raw(self.path, self.schema)


@contextmanager
def _database_errors_mapped(database: str) -> Iterator[None]:
    """A read-only, full or locked database file as one line naming it."""
    from campaignctl.store.sqlite import errors_mapped

    with errors_mapped(database):
        yield


def _database_of(store: Store) -> _Database:
    path = store.path
    if path is not None:
        return _Database(str(path))
    if not store.in_memory:
        raise LeadsInputError(f"{store.url}: leads import writes only to SQLite databases")
    # An in-memory store lives only in its own connection: copy the lead table's schema.
    from campaignctl.store.sqlite import lead_schema

    return _Database(":memory:", lead_schema(store.engine))


@dataclass
class _ImportJob:
    """Everything an import needs, picklable: run here, or in a process of its own.

    With workers, the CLI process would otherwise carry both its own imports (Typer, Rich,
    pydantic, SQLAlchemy: about 57 MiB before reading a byte) and the import's working set
    (SQLite's cache, chunks in flight). The import process starts from the forkserver, which
    has loaded only this module, so neither process carries both.
    """

    src: _Source
    report: ImportReport
    database: _Database
    rejects: Path | None
    dry_run: bool
    now: datetime
    workers: int

    def run(self, progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """Read, normalise, deduplicate and insert; returns the filled report."""
        src, report = self.src, self.report
        columns = src.normaliser.columns
        sink = _Rejects(self.rejects, columns.header, src.fmt.delimiter) if self.rejects else None
        try:
            with (
                _database_errors_mapped(self.database.path),
                closing(self.database.connect()) as conn,
            ):
                writer = _Writer(
                    conn, src.normaliser, report, sink, now=self.now, dry_run=self.dry_run
                )
                try:
                    with closing(_normalised(src.normaliser, src.chunks(), self.workers)) as done:
                        for chunk, parsed in done:
                            writer.write(chunk, parsed)
                            if progress is not None:
                                progress(chunk[2], src.fmt.size)
                except BaseException:
                    writer.abort()
                    raise
                writer.finish()
        finally:
            if sink is not None:
                sink.close()
        return report

    def run_elsewhere(self, progress: Callable[[int, int], None] | None = None) -> ImportReport:
        """`run()` in a process of its own; progress, the report and errors come back here."""
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["campaignctl.leads"])
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_import_process, args=(self, send), name="campaignctl-import")
        proc.start()
        send.close()  # so that recv() sees EOF if the import process dies
        try:
            while True:
                try:
                    kind, *payload = receive.recv()
                except EOFError:
                    proc.join()
                    raise CampaignctlError(
                        f"{self.src.fmt.path}: the import process stopped "
                        f"(exit code {proc.exitcode}); whole transactions are kept",
                        "import the file again to complete it (duplicates are not inserted twice)",
                    ) from None
                if kind == "progress":
                    if progress is not None:
                        progress(*payload)
                    continue
                # The outcome is the import process's last word: let it exit by itself, or the
                # SIGTERM below would interrupt it mid-exit and print a traceback.
                proc.join(timeout=60)
                if kind == "done":
                    report: ImportReport = payload[0]
                    return report
                else:  # "error": rebuilt here, with its hint (exceptions pickle without it)
                    error_type, message, hint = payload
                    if isinstance(error_type, type) and issubclass(error_type, CampaignctlError):
                        raise error_type(message, hint)
                    raise RuntimeError(f"import process: {message}")
        finally:
            if proc.is_alive():
                # Interrupted here (Ctrl-C): SIGTERM makes the import process roll back its
                # open transaction and shut its workers down (`_import_process`).
                proc.terminate()
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.kill()
            proc.join()
            receive.close()


def _import_process(job: _ImportJob, send: Any) -> None:
    """The body of the import process: run the job, send back progress and the outcome."""
    import signal

    # Ctrl-C reaches the whole process group. This process leaves it to the CLI process,
    # which answers it with SIGTERM; raised here as KeyboardInterrupt, that rolls back and
    # shuts the pool down, so no worker is left behind. Workers inherit the ignored SIGINT
    # and are stopped by that shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        report = job.run(lambda done, total: send.send(("progress", done, total)))
    except CampaignctlError as exc:
        send.send(("error", type(exc), exc.message, exc.hint))
    except BaseException as exc:  # a bug: sent back as text, with its type
        import traceback

        send.send(("error", None, "".join(traceback.format_exception(exc)).strip(), None))
    else:
        send.send(("done", report))
    finally:
        send.close()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _workers_for(size: int) -> int:
    """Worker processes for a file: `CAMPAIGNCTL_IMPORT_WORKERS`, else one per CPU (at most 4)
    when the file is big enough to repay their start, else none."""
    import os

    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        if not env.isdigit():
            raise LeadsInputError(f"{WORKERS_ENV}={env!r}: expected a number of processes")
        return int(env)
    return min(os.cpu_count() or 1, 4) if size >= PARALLEL_BYTES else 0


def sample_leads_from_csv(
    path: Path, cfg: Config, limit: int | None = None
) -> list[dict[str, Any]]:
    """Lead contexts (as templates see them) for the valid, distinct rows of a CSV file.

    Reads the file as `leads import` would, without any database; `check --leads` uses it.
    """
    from campaignctl.audience import lead_context

    src = _open_source(path, (), cfg.settings.default_region)
    emails: set[str] = set()
    phones: set[str] = set()
    out: list[dict[str, Any]] = []
    with closing(src.chunks()) as chunks:
        for chunk in chunks:
            for line, raw in src.normaliser.records(chunk):
                if limit is not None and len(out) >= limit:
                    return out
                parsed = src.normaliser.row(line, raw)
                p = claim(parsed, emails, phones) if parsed.reject is None else None
                if p is not None:
                    out.append(
                        lead_context(
                            email=p.email,
                            phone=p.phone,
                            first_name=p.first_name,
                            last_name=p.last_name,
                            timezone=p.timezone,
                            status="new",
                            tags=json.loads(p.tags),
                            attrs=json.loads(p.attrs),
                        )
                    )
    return out


# ---------------------------------------------------------------- listing


def list_leads(
    store: Store, where: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Leads as JSON-ready objects (fixed fields, `optouts`, then attributes), filtered by an
    audience expression and cut at `limit`, in import order."""
    from campaignctl.audience import compile_audience
    from campaignctl.store import lead_context
    from campaignctl.store import leads as store_leads

    matches = compile_audience(where, "--where")
    out: list[dict[str, Any]] = []
    with store.read() as session:
        optouts: dict[int, list[str]] = {}
        for lead_id, channel in store_leads.all_optouts(session):
            optouts.setdefault(lead_id, []).append(channel)
        for lead in store_leads.in_import_order(session):
            if limit is not None and len(out) >= limit:
                break
            if where and not matches(lead_context(lead)):
                continue
            obj: dict[str, Any] = {
                "id": lead.id,
                "email": lead.email,
                "phone": lead.phone,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "timezone": lead.timezone,
                "status": lead.status,
                "tags": list(lead.tags or []),
                "optouts": optouts.get(lead.id or 0, []),
            }
            for key, value in (lead.attrs or {}).items():
                obj.setdefault(key, value)
            out.append(obj)
    return out
