"""SMS encoding and segment counts, as carriers (and Twilio's bill) count them.

A message is GSM-7 when every character is in the GSM 03.38 default alphabet or its extension
table (extension characters take two septets: an escape plus the character); otherwise the whole
message is UCS-2, counted in UTF-16 code units, so an emoji outside the BMP takes two. One
segment holds 160 septets (GSM-7) or 70 units (UCS-2); a longer message is split into segments of
153 or 67, because each carries a 6-byte concatenation header. A segment boundary never splits an
escape pair or a surrogate pair, so such a character moves whole into the next segment.

No maintained PyPI library does this (sms-counter has one 0.0.0 release and counts UCS-2 by code
points; py-smsify is about transliteration), hence this small module, tested against Twilio's
documented examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7 = GSM7_BASIC | GSM7_EXTENSION

Encoding = Literal["GSM-7", "UCS-2"]
LIMITS: dict[str, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SmsInfo:
    """How a body travels as SMS."""

    encoding: Encoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    non_gsm: tuple[str, ...] = ()  # the characters that forced UCS-2, in order of appearance

    def describe(self) -> str:
        """`GSM-7, 95 characters, 1 segment` (what preview and check print)."""
        unit = "septets" if self.encoding == "GSM-7" else "UTF-16 units"
        seg = "segment" if self.segments == 1 else "segments"
        text = f"{self.encoding}, {self.units} {unit}, {self.segments} {seg}"
        if self.non_gsm:
            text += " (UCS-2 because of " + " ".join(repr(c) for c in self.non_gsm[:5]) + ")"
        return text


def is_gsm7(text: str) -> bool:
    """True when `text` can be sent in the GSM-7 alphabet (basic or extension table)."""
    return all(c in GSM7 for c in text)


def _units(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def analyze(text: str) -> SmsInfo:
    """Encoding, size and segment count of an SMS body."""
    non_gsm = tuple(dict.fromkeys(c for c in text if c not in GSM7))
    encoding: Encoding = "UCS-2" if non_gsm else "GSM-7"
    units = _units(text, encoding)
    total = sum(units)
    single, multi = LIMITS[encoding]
    if total == 0:
        segments = 0
    elif total <= single:
        segments = 1
    else:
        segments, used = 1, 0
        for u in units:
            if used + u > multi:  # the pair moves whole into the next segment
                segments, used = segments + 1, 0
            used += u
    return SmsInfo(encoding, total, segments, non_gsm)
