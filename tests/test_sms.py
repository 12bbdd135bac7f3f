"""SMS encoding and segments, against the figures Twilio documents.

Twilio: GSM-7 fits 160 characters in one segment and 153 per segment beyond; "a 161-character
message will be sent as two messages: one with 153 characters and a second with eight"; UCS-2
fits 70, then 67 per segment; extension-table characters take two septets.
"""

import pytest

from campaignctl.sms import analyze, is_gsm7


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("Hello", "GSM-7", 5, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),  # 153 + 8
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters count 2
        ("€" * 81, "GSM-7", 162, 2),
        ("{[]}~^|\\", "GSM-7", 16, 1),
        ("Ñandú", "UCS-2", 5, 1),  # ú is not in GSM-7, so the whole message is UCS-2
        ("á" * 70, "UCS-2", 70, 1),
        ("á" * 71, "UCS-2", 71, 2),  # 67 + 4
        ("á" * 134, "UCS-2", 134, 2),
        ("á" * 135, "UCS-2", 135, 3),
        ("😀" * 35, "UCS-2", 70, 1),  # emoji are two UTF-16 code units
        ("😀" * 36, "UCS-2", 72, 2),
    ],
)
def test_segments(text, encoding, units, segments):
    info = analyze(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


def test_gsm_alphabet_edges():
    assert is_gsm7("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r")
    assert not is_gsm7("’")  # a curly apostrophe from a word processor
    assert not is_gsm7("ç")
    assert analyze("It’s here").non_gsm == ("’",)


def test_escape_pair_is_never_split_across_segments():
    # 306 septets would fit 2 segments, but the € straddles the first boundary and moves whole
    text = "a" * 152 + "€" + "a" * 152
    assert analyze(text).units == 306
    assert analyze(text).segments == 3


def test_surrogate_pair_is_never_split_across_segments():
    text = "á" * 66 + "😀" + "á" * 66
    assert analyze(text).units == 134
    assert analyze(text).segments == 3


def test_describe():
    assert analyze("Hi").describe() == "GSM-7, 2 septets, 1 segment"
    assert analyze("María " * 20).describe() == (
        "UCS-2, 120 UTF-16 units, 2 segments (UCS-2 because of 'í')"
    )
