"""Reading a CSV file: its encoding and delimiter (guessed or given), and its records cut into
chunks that workers can parse on their own."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from campaignctl.errors import CampaignctlError

SAMPLE_BYTES = 64 * 1024
SCAN_BYTES = 1024 * 1024
BATCH_ROWS = 2500  # lines per chunk handed to a worker


class LeadsInputError(CampaignctlError):
    """A CSV file that cannot be imported at all (nothing is written)."""


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


MAP_HINT = "campaignctl leads import {path} --map email=COLUMN"


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


Chunk = tuple[int, str, int]  # first line, text of whole records, bytes of the file read so far


def read_chunks(fh: TextIO, first_line: int) -> Iterator[Chunk]:
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
