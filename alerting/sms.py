"""SMS encoding and segmentation (3GPP TS 23.038 / 23.040).

A text that uses only the GSM 7-bit default alphabet travels as GSM-7: 160
characters in a single SMS, 153 per segment when the message is concatenated
(the user-data header takes the rest). The characters of the extension table
(``^ { } \\ [ ~ ] | €``) are sent as an escape plus the character, so they count
as two. Anything else -- Vietnamese with its diacritics, Khmer -- needs UCS-2:
70 characters in a single SMS, 67 per concatenated segment (counted in UTF-16
code units, so a character outside the BMP counts as two).

:func:`split` (on the NFC form of the text: decomposed Vietnamese would count
each accent as a character) cuts it into segments **only between words** (after
whitespace), keeping the whitespace at the end of the earlier part, so that
``"".join(parts) == text`` and a phone that joins the parts shows the text as
written. (The one change: whitespace that would overflow a full segment is dropped.)

Too long for ``max_segments``: by default the message is **truncated, visibly**:
``truncated`` is True, the cut is at a word boundary, the last part ends with an
ellipsis (``…`` in UCS-2, ``...`` in GSM-7) and ``omitted`` holds what was left
out, so the caller can log it or pick a shorter form. With ``strict=True``,
:class:`SmsTooLong` (a ``ValueError``) is raised instead. A single word longer
than a whole segment cannot be split without cutting it: that is always a
``ValueError``.

:func:`to_gsm7` gives the unaccented form of a Vietnamese text ("Nước sông Cầu"
-> "Nuoc song Cau"): 160 characters per SMS instead of 70, for the phones and
gateways that garble UCS-2.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

Encoding = Literal["gsm7", "ucs2"]

# The GSM 7-bit default alphabet (3GPP TS 23.038, 6.2.1), without the escape (0x1B).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: escape + character, two septets each.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67

ELLIPSIS: dict[Encoding, str] = {"gsm7": "...", "ucs2": "…"}

# Letters with no decomposition into base + combining mark, and punctuation that
# is not in the GSM alphabet; the rest is done by NFKD + dropping the marks.
_GSM7_MAP = {
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "ł": "l",
    "Ł": "L",
    "µ": "u",
    "…": "...",
    "–": "-",
    "—": "-",
    "‐": "-",
    "‑": "-",
    "−": "-",
    "‘": "'",
    "’": "'",
    "‚": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "«": '"',
    "»": '"',
    "•": "-",
    "·": ".",
    "°": "o",
    "\t": " ",
    "\u00a0": " ",
    "\u200b": "",
}
_BREAK = re.compile(r"(?<=[\s\u200b])(?=[^\s\u200b])")


class SmsTooLong(ValueError):
    """The text needs more segments than allowed (``split(..., strict=True)``)."""


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 default alphabet or its extension."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def encoding_of(text: str) -> Encoding:
    return "gsm7" if is_gsm7(text) else "ucs2"


def units(text: str, encoding: Encoding) -> int:
    """Length on the air: septets for GSM-7 (extension characters count 2),
    UTF-16 code units for UCS-2."""
    if encoding == "gsm7":
        return sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    return len(text.encode("utf-16-le")) // 2


def limits(encoding: Encoding) -> tuple[int, int]:
    """(single-SMS capacity, per-segment capacity when concatenated)."""
    return (GSM7_SINGLE, GSM7_MULTI) if encoding == "gsm7" else (UCS2_SINGLE, UCS2_MULTI)


def to_gsm7(text: str) -> str:
    """The unaccented form: Vietnamese diacritics removed (đ→d, ư→u, ơ→o, â→a, ...),
    typographic punctuation made plain; the result is pure GSM-7. A character with
    no Latin equivalent (Khmer, CJK, emoji) becomes ``?``, as SMS gateways do."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        mapped = _GSM7_MAP.get(ch)
        if mapped is not None:
            out.append(mapped)
            continue
        for c in unicodedata.normalize("NFKD", ch):
            if unicodedata.combining(c):
                continue
            mapped = _GSM7_MAP.get(c, c)
            if all(m in GSM7_BASIC for m in mapped):
                out.append(mapped)
            elif c in GSM7_EXTENSION:
                out.append(c)
            elif unicodedata.category(c).startswith("Z"):
                out.append(" ")
            else:
                out.append("?")
    # NFKD also unaccents the accented letters GSM-7 has (é, à, Ü ...): one plain form.
    return "".join(out)


@dataclass(frozen=True)
class SmsMessage:
    """A text ready for an SMS gateway: its encoding and the parts to send.

    ``text`` is what is sent (``"".join(parts)``); when ``truncated`` it ends with
    an ellipsis and ``omitted`` is the part of the original that was left out."""

    encoding: Encoding
    parts: list[str]
    text: str
    truncated: bool = False
    omitted: str = ""
    max_segments: int = field(default=4, compare=False)

    @property
    def segments(self) -> int:
        return len(self.parts)

    @property
    def units(self) -> list[int]:
        """Characters (septets or UTF-16 units) of each part, as the network counts them."""
        return [units(p, self.encoding) for p in self.parts]

    @property
    def capacity(self) -> int:
        """Characters one segment of this message can hold."""
        single, multi = limits(self.encoding)
        return single if self.segments <= 1 else multi


def split(text: str, max_segments: int = 4, *, strict: bool = False) -> SmsMessage:
    """Encode ``text`` (NFC-normalised) and cut it into segments at word boundaries.

    Over ``max_segments``: truncated at a word with an ellipsis (``truncated=True``,
    ``omitted`` set), or :class:`SmsTooLong` when ``strict``. See the module doc."""
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    text = unicodedata.normalize("NFC", text)
    enc = encoding_of(text)
    single, multi = limits(enc)
    if units(text, enc) <= single:
        return SmsMessage(enc, [text], text, max_segments=max_segments)

    tokens = [_fit(t, enc, multi) for t in _BREAK.split(text) if t]
    parts: list[str] = []
    current = ""
    for t in tokens:
        if current and units(current + t, enc) > multi:
            parts.append(current)
            current = ""
        current += t
    if current:
        parts.append(current)
    if len(parts) <= max_segments:
        return SmsMessage(enc, parts, "".join(parts), max_segments=max_segments)

    if strict:
        raise SmsTooLong(
            f"the text needs {len(parts)} {enc} segments ({units(text, enc)} characters); "
            f"at most {max_segments} are allowed"
        )
    return _truncate(tokens, enc, max_segments)


def _fit(token: str, enc: Encoding, capacity: int) -> str:
    """A word and the whitespace after it, refused if the word alone overflows a segment;
    whitespace beyond a full segment is dropped (the only change ``split`` makes)."""
    word = token.rstrip()
    size = units(word, enc)
    if size > capacity:
        raise ValueError(
            f"the word {word[:20]!r}... is {size} characters long, more than one {enc} "
            f"segment ({capacity}); it cannot be split without cutting it"
        )
    while units(token, enc) > capacity:
        token = token[:-1]
    return token


def _truncate(tokens: list[str], enc: Encoding, max_segments: int) -> SmsMessage:
    single, multi = limits(enc)
    capacity = single if max_segments == 1 else multi
    mark = ELLIPSIS[enc]
    parts: list[list[str]] = [[]]
    for t in tokens:
        if parts[-1] and units("".join(parts[-1]) + t, enc) > capacity:
            if len(parts) == max_segments:
                break
            parts.append([])
        parts[-1].append(t)
    # Make room for the ellipsis in the last part, giving back whole words.
    last = parts[-1]
    while last and units("".join(last).rstrip() + mark, enc) > capacity:
        last.pop()
    used = sum(len(p) for p in parts)
    texts = ["".join(p) for p in parts]
    texts[-1] = texts[-1].rstrip() + mark
    return SmsMessage(
        enc,
        texts,
        "".join(texts),
        truncated=True,
        omitted="".join(tokens[used:]),
        max_segments=max_segments,
    )
