"""Normalisation and identity: one CSV record to a lead row (email and phone rules, time zone,
tags, attributes as JSON), and the rule that tells a new lead from a duplicate (`claim`)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from campaignctl.leads import phones
from campaignctl.leads.columns import ColumnMap
from campaignctl.leads.csvfile import Chunk, LeadsInputError
from campaignctl.values import attr_value, normal_tags

if TYPE_CHECKING:
    from phonenumbers import PhoneNumber

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
    if _PLAIN_PHONE.fullmatch(value):
        # phonenumbers drops these separators itself, but slowly: "(415) 555-0132" costs it
        # half again as much as "4155550132". Only digits and separators qualify, so
        # extensions, letters and second numbers still reach phonenumbers as written.
        value = value.translate(_SEPARATORS)
    parts = plain_parts(value, region)
    if parts is not None:
        # The plain forms, without a PhoneNumber: validity from the same metadata (`phones`)
        code, nsn = parts
        ok = phones.valid(code, nsn, region)
        if ok is not None:
            if not ok:
                return None, None, f"not a valid number{_where(region)}"
            return "+" + str(code) + nsn, None, None
    import phonenumbers

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


_DIGITS = re.compile(r"\+?[0-9]{3,17}")


class _Plan(NamedTuple):
    """What `phonenumbers.parse` would do with a region's plain digits, from its metadata."""

    country_code: int
    country_code_text: str
    idd: Callable[[str], object]  # `international_prefix` matched at the start
    national_prefix: Callable[[str], object] | None  # `national_prefix_for_parsing`, likewise
    metadata: Any  # phonenumbers' PhoneMetadata of the region


@lru_cache(maxsize=1)
def _unstripped() -> frozenset[int]:
    from phonenumbers.phonenumberutil import ValidationResult as V

    return frozenset({V.TOO_SHORT, V.IS_POSSIBLE_LOCAL_ONLY, V.INVALID_LENGTH})


@lru_cache(maxsize=512)
def _plan(region: str | None) -> _Plan | None:
    """The metadata `parse_plain` reads for numbers of a region (None: none known)."""
    from phonenumbers.phonemetadata import PhoneMetadata

    if region is None or (meta := PhoneMetadata.metadata_for_region(region.upper())) is None:
        return None
    if meta.country_code is None or meta.international_prefix is None:
        return None
    prefix = meta.national_prefix_for_parsing
    return _Plan(
        meta.country_code,
        str(meta.country_code),
        re.compile(meta.international_prefix).match,
        re.compile(prefix).match if prefix else None,
        meta,
    )


@lru_cache(maxsize=1024)
def _plan_for_code(code: int, region: str | None) -> _Plan | None:
    """`_plan` of the region `parse` reads a `+code` number with: the caller's own when the
    code is its country's, else the code's main region's (as `parse` does)."""
    import phonenumbers

    main = phonenumbers.region_code_for_country_code(code)
    if main == region:
        return _plan(region)
    if main == phonenumbers.UNKNOWN_REGION or main == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        return None  # non-geographic codes: left to parse
    return _plan(main)


def parse_plain(value: str, region: str | None) -> PhoneNumber | None:
    """`phonenumbers.parse(value, region)` for the plain forms most files hold, several
    times faster; None when the value is not one of them (then `parse` itself must run).
    `tests/test_phone_fast_path.py` holds it equal to `parse`; see `plain_parts`.
    """
    parts = plain_parts(value, region)
    if parts is None:
        return None
    from phonenumbers import PhoneNumber

    code, nsn = parts
    if nsn[0] != "0":
        return PhoneNumber(country_code=code, national_number=int(nsn))
    zeros = len(nsn) - len(nsn.lstrip("0"))
    zeros = min(zeros, len(nsn) - 1)  # an all-zero number keeps its last zero as the number
    return PhoneNumber(
        country_code=code,
        national_number=int(nsn),
        italian_leading_zero=True,
        number_of_leading_zeros=zeros if zeros != 1 else None,
    )


def plain_parts(value: str, region: str | None) -> tuple[int, str] | None:
    """(country code, national significant number) that `phonenumbers.parse(value, region)`
    finds, for the plain forms most files hold; None when the value is not one of them.

    The plain forms are `+` and digits (E.164) and national digits alone. Each step is the
    one `parse` takes on such a value, read from phonenumbers' own metadata (country codes,
    international and national prefixes), and a national prefix is stripped by phonenumbers'
    own step for it; wherever `parse` could do more (an international prefix, a country code
    written without `+`, a leading zero after a `+code`, anything but digits), the value is
    left to `parse`. National digits with a leading zero `parse` keeps (Italy's, or a number
    of another country read with this region) keep it here too, as the number's own digits.
    """
    if _DIGITS.fullmatch(value) is None:
        return None
    if value[0] == "+":
        import phonenumbers

        digits = value[1:]
        if digits[0] == "0":
            return None
        # parse tries 1, 2, then 3 digits against its table of country codes
        for width in (1, 2, 3):
            code = int(digits[:width])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                break
        else:
            return None
        plan = _plan_for_code(code, region)
        national = digits[width:]
    else:
        plan = _plan(region)
        if plan is None or plan.idd(value) or value.startswith(plan.country_code_text):
            return None
        code, national = plan.country_code, value
    if plan is None or len(national) < 2:
        return None
    if plan.national_prefix is not None and plan.national_prefix(national):
        # a national prefix ("0917 ..." in PH): stripped by phonenumbers' own step, kept only
        # when what is left has a possible length, as parse does
        from phonenumbers import phonenumberutil as pnu

        _, stripped, _ = pnu._maybe_strip_national_prefix_carrier_code(national, plan.metadata)
        if pnu._test_number_length(stripped, plan.metadata) not in _unstripped():
            national = stripped
        if len(national) < 2:
            return None
    if national[0] == "0" and value[0] == "+":  # a leading zero parse keeps: left to parse
        return None
    return code, national


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
    tagged: bool = False  # the row's tags cell was not empty (`--update --tags replace`)


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


def _json_attr(value: str) -> str:
    """One attribute value as stored: a JSON number when it looks like one (`values.attr_value`)."""
    stored = attr_value(value)
    return _quote(value) if stored is value else repr(stored)


#: `_json_attr`, remembered: attribute values repeat (cities, sizes, yes/no), and a cache hit
#: costs a tenth of the number test and quoting. Bounded: a few MiB at most per worker.
_json_attr_cached = lru_cache(maxsize=16384)(_json_attr)


def json_attr_object(pairs: Mapping[str, str]) -> str:
    """`_to_json({k: attr_value(v)})` for string keys and values, faster."""
    return "{" + ",".join([_quote(k) + ":" + _json_attr(v) for k, v in pairs.items()]) + "}"


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
        self.extra_tags = tuple(normal_tags(extra_tags))
        self.width = len(columns.header)
        self.padding = [""] * self.width
        f = columns.fields
        self.email, self.phone, self.country = f.get("email"), f.get("phone"), f.get("country")
        self.first, self.last = f.get("first_name"), f.get("last_name")
        self.tz, self.tags = f.get("timezone"), f.get("tags")
        self.attrs = columns.attrs
        # each attribute's JSON key, quoted once: `json_attr_object`'s text, joined in `row`
        self.attr_keys = tuple((i, _quote(name) + ":") for i, name in columns.attrs)
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
        return [Parsed._make(self.fields(line, raw)) for line, raw in self.records(chunk)]

    def chunk_fields(self, chunk: Chunk) -> list[tuple[Any, ...]]:
        """`chunk` as plain tuples of Parsed's fields (what workers send back)."""
        return [self.fields(line, raw) for line, raw in self.records(chunk)]

    def row(self, line: int, raw: list[str]) -> Parsed:
        return Parsed._make(self.fields(line, raw))

    def fields(self, line: int, raw: list[str]) -> tuple[Any, ...]:
        """`row`'s fields as a plain tuple (a named one costs more to make and to send)."""
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
            return (line, None, None, None, None, None, "[]", "{}", (), 0, reason, raw, False)
        for problem in problems:
            notes.append(f"{problem}; dropped")
            dropped += 1
        tz = raw[self.tz].strip() or None if self.tz is not None else None
        if tz is not None and not valid_timezone(tz):
            notes.append(f"timezone {tz!r} is not an IANA time zone; dropped")
            dropped += 1
            tz = None
        tags = self.no_tags
        tagged = False
        if self.tags is not None and (tag_text := raw[self.tags].strip()):
            tagged = True
            tags = _tags_json(tag_text, self.extra_tags)
        # json_attr_object({name: value ...}) for the non-empty cells (names are unique)
        attrs = ",".join(
            [k + _json_attr_cached(v) for i, k in self.attr_keys if (v := raw[i].strip())]
        )
        return (
            line,
            email,
            phone,
            raw[self.first].strip() or None if self.first is not None else None,
            raw[self.last].strip() or None if self.last is not None else None,
            tz,
            tags,
            "{" + attrs + "}",
            tuple(notes),
            dropped,
            None,
            raw if notes else None,
            tagged,
        )


@lru_cache(maxsize=4096)
def _tags_json(text: str, extra: tuple[str, ...]) -> str:
    """A tags cell as stored (JSON array, lower case, each once, then `extra`); remembered:
    the same few combinations of tags fill most files."""
    found = dict.fromkeys([t.strip().lower() for t in _TAG_SPLIT.split(text)])
    found.pop("", None)
    if extra:
        found.update(dict.fromkeys(extra))
    return json_strings(found)


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
