"""SMS encoding and segmentation (alerting.sms)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from alerting.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SmsTooLong,
    encoding_of,
    is_gsm7,
    split,
    to_gsm7,
    units,
)

VI = (
    "Nước sông Cầu dâng cao, báo động III. Di chuyển người và tài sản lên cao. "
    "Theo dõi loa truyền thanh. Người già, trẻ em và người khuyết tật đi trước. "
    "Không đến gần bờ sông, không qua ngầm, tràn khi nước chảy xiết. "
)

# Every Vietnamese vowel with every tone, both cases, and đ/Đ.
_TONES = ["", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323"]
_VOWELS = ["a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư", "y"]
VIETNAMESE_LETTERS = (
    "".join(unicodedata.normalize("NFC", v + t) for v in _VOWELS for t in _TONES) + "đ"
)
VIETNAMESE_LETTERS += VIETNAMESE_LETTERS.upper()


def _words(text: str) -> list[str]:
    return text.split()


# --- encoding ------------------------------------------------------------------------


def test_vietnamese_with_diacritics_needs_ucs2() -> None:
    assert encoding_of("Nước sông Cầu") == "ucs2"
    assert encoding_of("đ") == "ucs2"
    assert encoding_of("សមយុទ្ធ") == "ucs2"


def test_plain_text_is_gsm7() -> None:
    assert encoding_of("Nuoc song Cau dang cao, bao dong III.") == "gsm7"
    # accented letters that the GSM alphabet has do not force UCS-2
    assert encoding_of("é è à ü Ñ £ ¥ §") == "gsm7"
    assert encoding_of("{€} [x] ~|^\\") == "gsm7"


def test_extension_characters_count_two() -> None:
    for ch in "^{}\\[~]|€":
        assert ch in GSM7_EXTENSION
        assert units(ch, "gsm7") == 2
    assert units("a{b}", "gsm7") == 6
    # 160 characters, but 161 septets: two segments
    text = "abc " * 39 + "abc€"
    assert len(text) == 160
    assert units(text, "gsm7") == 161
    assert split(text).segments == 2


def test_ucs2_counts_utf16_units() -> None:
    assert units("Nước", "ucs2") == 4
    assert units("🌊", "ucs2") == 2  # outside the BMP: a surrogate pair


# --- segment sizes -------------------------------------------------------------------


def test_gsm7_single_is_160_concatenated_153() -> None:
    text = ("abcd " * 32)[:160]
    assert len(text) == 160
    one = split(text)
    assert (one.encoding, one.segments, one.capacity) == ("gsm7", 1, 160)
    longer = split(text + "x")
    assert longer.segments == 2
    assert longer.capacity == 153
    assert all(u <= 153 for u in longer.units)


def test_ucs2_single_is_70_concatenated_67() -> None:
    text = ("Nước " * 14)[:70]
    assert len(text) == 70
    one = split(text)
    assert (one.encoding, one.segments, one.capacity) == ("ucs2", 1, 70)
    longer = split(text + "ư")
    assert longer.segments == 2
    assert longer.capacity == 67
    assert all(u <= 67 for u in longer.units)


def test_parts_fill_segments_greedily() -> None:
    msg = split(VI * 2, max_segments=10)
    assert msg.encoding == "ucs2"
    assert msg.segments >= -(-units(VI * 2, "ucs2") // 67)
    for part, nxt in zip(msg.parts, msg.parts[1:], strict=False):
        first_word = nxt.split()[0]
        # the next word (with the space after it) would not have fitted in this part
        assert units(part + first_word + " ", "ucs2") > 67


def test_decomposed_vietnamese_is_counted_composed() -> None:
    nfd = unicodedata.normalize("NFD", "Nước sông Cầu dâng cao")
    assert len(nfd) > len("Nước sông Cầu dâng cao")
    msg = split(nfd)
    assert msg.text == "Nước sông Cầu dâng cao"
    assert msg.units == [len("Nước sông Cầu dâng cao")]


# --- never mid-word ------------------------------------------------------------------


@pytest.mark.parametrize("text", [VI, VI * 2, to_gsm7(VI) * 3, "x " * 400])
def test_split_never_cuts_a_word(text: str) -> None:
    msg = split(text, max_segments=10)
    assert not msg.truncated
    assert "".join(msg.parts) == msg.text == text
    for part in msg.parts[:-1]:
        assert part[-1].isspace(), f"part ends inside a word: {part!r}"
    # every word of every part is a whole word of the text
    assert [w for p in msg.parts for w in _words(p)] == _words(text)


def test_a_word_longer_than_a_segment_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be split without cutting"):
        split("a " + "x" * 200)


def test_whitespace_past_a_full_segment_is_dropped_not_the_word() -> None:
    word = "y" * 153
    msg = split(word + "   z " * 40)
    assert msg.parts[0] == word
    assert all(u <= 153 for u in msg.units)


# --- too long: truncated, visibly ----------------------------------------------------


def test_over_long_text_is_truncated_visibly_at_a_word() -> None:
    text = VI * 3  # about 5 UCS-2 segments
    msg = split(text, max_segments=3)
    assert msg.truncated
    assert msg.segments == 3
    assert all(u <= 67 for u in msg.units)
    assert msg.text == "".join(msg.parts)
    assert msg.text.endswith("…")
    kept = msg.text[:-1]
    assert text.startswith(kept)
    assert not kept[-1].isspace()
    # the cut is at a word boundary: the left-out text starts a word
    assert msg.omitted and msg.omitted == text[len(kept) :].lstrip()
    assert text[len(kept)].isspace()


def test_over_long_gsm7_uses_ascii_ellipsis() -> None:
    msg = split(to_gsm7(VI) * 6, max_segments=2)
    assert msg.truncated and msg.encoding == "gsm7"
    assert msg.text.endswith("...")
    assert is_gsm7(msg.text)
    assert all(u <= 153 for u in msg.units)


def test_one_segment_limit_uses_single_capacity() -> None:
    msg = split(VI, max_segments=1)
    assert msg.truncated and msg.segments == 1
    assert msg.units[0] <= 70
    assert msg.units[0] > 67 - 10  # it used the room of a single SMS


def test_strict_raises_instead_of_truncating() -> None:
    with pytest.raises(SmsTooLong, match="at most 2") as exc:
        split(VI * 3, max_segments=2, strict=True)
    assert isinstance(exc.value, ValueError)
    assert not split(VI, max_segments=4, strict=True).truncated


def test_max_segments_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split("x", max_segments=0)


# --- unaccented form -----------------------------------------------------------------


def test_to_gsm7_removes_every_vietnamese_diacritic() -> None:
    plain = to_gsm7(VIETNAMESE_LETTERS)
    assert len(plain) == len(VIETNAMESE_LETTERS)
    assert re.fullmatch(r"[aeiouydAEIOUYD]+", plain), plain
    assert is_gsm7(plain)


def test_to_gsm7_examples() -> None:
    assert to_gsm7("Nước sông Cầu dâng cao") == "Nuoc song Cau dang cao"
    assert to_gsm7("Đường Đắk Nông, Phường Vũ Ninh") == "Duong Dak Nong, Phuong Vu Ninh"
    assert to_gsm7("Sở Nông nghiệp và Môi trường") == "So Nong nghiep va Moi truong"
    assert to_gsm7(unicodedata.normalize("NFD", "Lũ quét")) == "Lu quet"
    assert to_gsm7("“Cảnh báo” – 30°C … µg/m³") == '"Canh bao" - 30oC ... ug/m3'


@pytest.mark.parametrize("text", [VI, VIETNAMESE_LETTERS, "Cà phê ở Hà Nội: 25.000đ — ngon!"])
def test_to_gsm7_output_is_pure_gsm7(text: str) -> None:
    out = to_gsm7(text)
    assert all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in out)
    assert not any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", out))
    assert split(out).encoding == "gsm7"


def test_to_gsm7_replaces_what_has_no_latin_form() -> None:
    out = to_gsm7("សមយុទ្ធ 3")
    assert is_gsm7(out)
    assert out.endswith(" 3") and "?" in out
