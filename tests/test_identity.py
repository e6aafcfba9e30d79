"""Tests for circhub.domain.identity: reader ID numbers are validated, masked and keyed, never
leaked.

Expected check characters are computed with an independent formula (the python-stdnum form
``(1 - 2 * int(body, 13)) % 11``), not with the module under test.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pytest

from circhub.domain.identity import (
    ID_NUMBER_PATTERN,
    IdCheck,
    IdStatus,
    check_character,
    check_id_number,
    looks_like_id_number,
    mask_id_number,
    normalize_id_number,
    reader_key,
    upgrade_15_to_18,
)

try:
    from hypothesis import given
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    HAVE_HYPOTHESIS = False

TODAY = date(2025, 6, 1)
SAMPLE_X = "11010519491231002X"  # the sample number published with GB 11643-1999
SAMPLE_M = "360426199101010071"
PROVINCE_SPANS = ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65))
MAINLAND_PROVINCES = [str(code) for low, high in PROVINCE_SPANS for code in range(low, high + 1)]
KEY = b"test-secret-key"


def stdnum_check(body17: str) -> str:
    """Independent MOD 11-2: the base-13 trick of python-stdnum's cn.ric."""
    value = (1 - 2 * int(body17, 13)) % 11
    return "X" if value == 10 else str(value)


def with_check(body17: str) -> str:
    return body17 + stdnum_check(body17)


def wrong_check(body17: str) -> str:
    right = stdnum_check(body17)
    return body17 + ("0" if right != "0" else "1")


def check(raw: str | None) -> IdCheck:
    return check_id_number(raw, today=TODAY)


# --- resident ID numbers -----------------------------------------------------------------


def test_published_sample_with_x_check_char_is_valid_female_born_1949():
    result = check(SAMPLE_X)
    assert result == IdCheck(IdStatus.VALID, SAMPLE_X, None, date(1949, 12, 31), "F", "resident_id")


def test_sample_360426199101010071_is_valid_male():
    result = check(SAMPLE_M)
    assert result.status is IdStatus.VALID
    assert result.normalized == SAMPLE_M
    assert result.rule is None
    assert result.birth_date == date(1991, 1, 1)
    assert result.sex == "M"


def test_independent_formula_agrees_on_the_published_samples():
    assert with_check(SAMPLE_X[:17]) == SAMPLE_X
    assert with_check(SAMPLE_M[:17]) == SAMPLE_M


def test_lowercase_x_is_accepted_and_upper_cased():
    result = check(SAMPLE_X.lower())
    assert result.status is IdStatus.VALID
    assert result.normalized == SAMPLE_X


def test_full_width_digits_x_and_full_width_spaces_are_accepted():
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in SAMPLE_X[:-1]) + "ｘ"
    raw = "\u3000" + full_width[:6] + "\u3000" + full_width[6:] + " \t\n"
    assert normalize_id_number(raw) == SAMPLE_X
    assert check(raw).normalized == SAMPLE_X


def test_stray_spaces_and_zero_width_characters_are_removed():
    assert normalize_id_number(" 110105 19491231\u00a0002x\u200b\ufeff ") == SAMPLE_X


def test_the_whole_full_width_ascii_block_and_nothing_past_it_is_mapped_to_ascii():
    # U+FF01..U+FF5E is the block Chinese input methods type; its neighbours are other scripts'
    # characters, which must reach the format check as they are.
    for cp in range(0xFF01, 0xFF5F):
        assert normalize_id_number(chr(cp)) == chr(cp - 0xFEE0).upper(), hex(cp)
    assert normalize_id_number("\uff00\uff5f") == "\uff00\uff5f"


def test_normalize_none_is_empty_string():
    assert normalize_id_number(None) == ""


def test_default_today_accepts_a_past_birth_date():
    assert check_id_number(SAMPLE_X).status is IdStatus.VALID


def test_wrong_check_char_is_invalid_but_keeps_birth_date_and_sex():
    result = check(wrong_check(SAMPLE_X[:17]))
    assert result.status is IdStatus.INVALID
    assert result.rule == "id_check_digit"
    assert result.normalized is None
    assert result.birth_date == date(1949, 12, 31)
    assert result.sex == "F"


def test_every_other_last_char_of_the_sample_is_a_check_digit_error():
    for last in "0123456789":
        result = check(SAMPLE_X[:17] + last)
        assert (result.status, result.rule) == (IdStatus.INVALID, "id_check_digit"), last


def test_impossible_date_19990230_is_invalid_birth_date_even_with_right_check_char():
    result = check(with_check("110105" + "19990230" + "001"))
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_birth_date")
    assert result.birth_date is None


def test_birth_date_after_today_is_invalid():
    number = with_check("110105" + "20250602" + "001")
    assert check(number).rule == "id_birth_date"
    assert check_id_number(number, today=date(2025, 6, 2)).status is IdStatus.VALID


def test_birth_date_before_1900_is_invalid():
    result = check(with_check("110105" + "18991231" + "001"))
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_birth_date")


def test_birth_date_on_1900_01_01_is_the_earliest_valid():
    assert check(with_check("110105" + "19000101" + "001")).status is IdStatus.VALID


def test_unknown_area_code_99_is_invalid_area():
    result = check(with_check("990105" + "19491231" + "002"))
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_area_code")


@pytest.mark.parametrize("province", MAINLAND_PROVINCES)
def test_every_mainland_province_code_is_a_valid_resident_area(province):
    assert check(with_check(province + "0105" + "19491231" + "002")).status is IdStatus.VALID


# Each span's neighbours: the codes just outside the ranges of GB/T 2260.
@pytest.mark.parametrize("prefix", ["00", "10", "16", "20", "24", "30", "38", "40", "47", "49",
                                    "55", "56", "60", "66", "70", "72"])
def test_non_province_prefixes_are_invalid_area(prefix):
    result = check(with_check(prefix + "0105" + "19491231" + "002"))
    assert (result.status, result.rule, result.kind) == (
        IdStatus.INVALID,
        "id_area_code",
        "resident_id",
    )


def test_taiwan_province_code_71_is_a_valid_resident_area():
    assert check(with_check("710000" + "19800101" + "001")).status is IdStatus.VALID


def test_check_character_matches_the_independent_formula_on_samples():
    assert check_character(SAMPLE_X[:17]) == "X"
    assert check_character(SAMPLE_M[:17]) == "1"


@pytest.mark.parametrize("bad", ["", "1101051949123100", "110105194912310021", "1101051949123100X"])
def test_check_character_rejects_anything_but_17_digits(bad):
    with pytest.raises(ValueError):
        check_character(bad)


# --- legacy 15-digit numbers -------------------------------------------------------------


def test_15_digit_number_is_upgraded_to_18_with_check_char():
    legacy = "110105491231002"
    expected = with_check("110105" + "19" + "491231002")
    result = check(legacy)
    assert result.status is IdStatus.VALID
    assert result.kind == "resident_id_15"
    assert result.normalized == expected == SAMPLE_X
    assert result.birth_date == date(1949, 12, 31)
    assert result.sex == "F"


def test_a_15_digit_numbers_sex_is_read_from_its_last_digit():
    assert check("110105491231012").sex == "F"  # sequence 012: the last digit, 2, is even
    assert check("110105491231021").sex == "M"


def test_upgrade_15_to_18_matches_the_independent_formula():
    legacy = "360426910101007"
    assert upgrade_15_to_18(legacy) == with_check("360426" + "19" + "910101007")


def test_upgrade_15_to_18_rejects_a_non_15_digit_input():
    with pytest.raises(ValueError):
        upgrade_15_to_18(SAMPLE_X)


def test_15_digit_number_with_impossible_date_is_invalid():
    result = check("110105990230002")
    assert (result.status, result.rule, result.kind) == (
        IdStatus.INVALID,
        "id_birth_date",
        "resident_id_15",
    )


def test_15_digit_number_with_unknown_area_is_invalid():
    assert check("990105491231002").rule == "id_area_code"


# --- Hong Kong / Macau / Taiwan residence permits ------------------------------------------


@pytest.mark.parametrize("area", ["810000", "820000", "830000"])
def test_hmt_residence_permit_numbers_are_accepted_as_permits(area):
    number = with_check(area + "19850317" + "003")
    result = check(number)
    assert result.status is IdStatus.PERMIT
    assert result.kind == "hmt_residence_permit"
    assert result.normalized == number
    assert result.rule is None
    assert result.birth_date == date(1985, 3, 17)
    assert result.sex == "M"  # sequence 003: odd


def test_hmt_residence_permit_with_wrong_check_char_is_invalid():
    result = check(wrong_check("810000" + "19850317" + "003"))
    assert (result.status, result.rule, result.kind) == (
        IdStatus.INVALID,
        "id_check_digit",
        "hmt_residence_permit",
    )


def test_hmt_prefix_with_a_county_part_is_invalid_area():
    # Permits always carry x10000/820000/830000; no resident ID starts with 81, 82 or 83.
    result = check(with_check("810101" + "19850317" + "003"))
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_area_code")


# --- foreigners' permanent residence ID cards --------------------------------------------


def test_foreign_permanent_residence_18_digit_number_is_a_permit():
    number = with_check("9" + "11" + "840" + "19800101" + "001")
    result = check(number)
    assert result.status is IdStatus.PERMIT
    assert result.kind == "foreign_permanent_residence"
    assert result.normalized == number
    assert result.birth_date == date(1980, 1, 1)


def test_foreign_permanent_residence_with_wrong_check_char_is_invalid():
    result = check(wrong_check("9" + "31" + "392" + "19751120" + "012"))
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_check_digit")


def test_foreign_permanent_residence_with_impossible_date_is_invalid():
    result = check(with_check("9" + "31" + "392" + "19750229" + "012"))
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_birth_date")


def test_foreign_permanent_residence_with_unknown_province_is_invalid():
    result = check(with_check("9" + "99" + "840" + "19800101" + "001"))
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_area_code")


def test_old_format_foreign_card_needs_review():
    result = check("USA110080110001")
    assert result == IdCheck(
        IdStatus.NEEDS_REVIEW,
        None,
        "id_format_unverifiable",
        None,
        None,
        "foreign_permanent_residence",
    )


# --- other documents and garbage ---------------------------------------------------------


@pytest.mark.parametrize("raw", ["E12345678", "G12345678", "A123456(7)", "a123456 (7)", "K1234567"])
def test_passport_or_hk_identity_card_needs_review(raw):
    result = check(raw)
    assert (result.status, result.rule, result.kind) == (
        IdStatus.NEEDS_REVIEW,
        "id_format_unverifiable",
        "unknown",
    )
    assert result.normalized is None


@pytest.mark.parametrize("raw", [None, "", "   ", "\u3000\t\n"])
def test_empty_or_none_is_invalid_id_empty(raw):
    result = check(raw)
    assert (result.status, result.rule) == (IdStatus.INVALID, "id_empty")


@pytest.mark.parametrize("raw", ["1234567890", "1101051949123100", "11010519491231002", "1" * 19])
def test_all_digit_string_of_wrong_length_is_invalid_id_length(raw):
    assert (check(raw).status, check(raw).rule) == (IdStatus.INVALID, "id_length")


@pytest.mark.parametrize("raw", ["hello", "AB12", "ABCDEFGHIJ", "110105-19491231-002X", "A" * 21])
def test_non_id_text_is_invalid_id_format(raw):
    assert (check(raw).status, check(raw).rule) == (IdStatus.INVALID, "id_format")


def test_status_values_are_short_lowercase_strings():
    for status in IdStatus:
        assert status.value == status.value.lower()
        assert len(status.value) <= 16
    assert IdStatus("needs_review") is IdStatus.NEEDS_REVIEW


def test_an_idcheck_cannot_be_changed_after_the_check():
    result = check(SAMPLE_X)
    with pytest.raises(AttributeError):
        result.status = IdStatus.INVALID  # type: ignore[misc]


def test_idcheck_repr_does_not_show_the_number():
    assert SAMPLE_X not in repr(check(SAMPLE_X))


# --- masking -----------------------------------------------------------------------------


def test_mask_18_chars_keeps_first_6_and_last_4_with_exactly_8_stars():
    assert mask_id_number("510104199001011234") == "510104********1234"
    assert mask_id_number(SAMPLE_X) == "110105********002X"


def test_mask_normalizes_before_masking():
    assert mask_id_number(" 110105 19491231 002x ") == "110105********002X"


def test_mask_short_strings_never_reveal_more_than_half():
    for n in range(1, 18):
        text = "ABCDEFGHIJKLMNOPQ"[:n]
        masked = mask_id_number(text)
        assert len(masked) == n
        revealed = sum(1 for c in masked if c != "*")
        assert revealed * 2 <= n, masked
        kept = revealed // 2
        assert masked[:kept] == text[:kept]
        assert masked[n - kept :] == text[n - kept :]


def test_mask_short_strings_keep_at_most_two_at_each_end():
    assert mask_id_number("E12345678") == "E1*****78"
    assert mask_id_number("A1B2") == "A**2"
    assert mask_id_number("ABC") == "***"
    assert mask_id_number("ABCDEFGHIJKLMNOP") == "AB" + "*" * 12 + "OP"  # 16 chars: still two


def test_mask_longer_than_18_keeps_the_first_6_and_last_4():
    assert mask_id_number("ABCDEFGHIJKLMNOPQRST") == "ABCDEF" + "*" * 10 + "QRST"


def test_mask_empty_and_none_give_empty_string():
    assert mask_id_number("") == ""
    assert mask_id_number(None) == ""


def test_masked_form_is_not_detected_as_an_id_number():
    assert not looks_like_id_number(mask_id_number(SAMPLE_X))


# --- keyed hash --------------------------------------------------------------------------


def test_reader_key_is_deterministic_hmac_sha256_hex():
    first = reader_key(SAMPLE_X, KEY)
    assert first == reader_key(SAMPLE_X, KEY)
    assert first == hmac.new(KEY, SAMPLE_X.encode(), hashlib.sha256).hexdigest()
    assert len(first) == 64
    assert SAMPLE_X not in first


def test_reader_key_differs_under_another_key():
    assert reader_key(SAMPLE_X, KEY) != reader_key(SAMPLE_X, b"another-key")


def test_reader_key_differs_for_another_number():
    assert reader_key(SAMPLE_X, KEY) != reader_key(SAMPLE_M, KEY)


def test_reader_key_is_the_same_for_spellings_of_one_number():
    assert reader_key(" 11010519491231002x", KEY) == reader_key(SAMPLE_X, KEY)


def test_reader_key_raises_on_empty_key():
    with pytest.raises(ValueError):
        reader_key(SAMPLE_X, b"")


def test_reader_key_raises_on_empty_number_and_does_not_echo_it():
    with pytest.raises(ValueError):
        reader_key("  ", KEY)
    with pytest.raises(ValueError) as excinfo:
        reader_key(SAMPLE_X, b"")
    assert SAMPLE_X not in str(excinfo.value)


# --- privacy scanner ---------------------------------------------------------------------


def test_looks_like_id_number_finds_an_id_inside_longer_text():
    assert looks_like_id_number(f"reader {SAMPLE_X} borrowed item 42")
    assert looks_like_id_number(f"id={SAMPLE_X.lower()};")
    assert looks_like_id_number(f"'{SAMPLE_M}'")


def test_looks_like_id_number_finds_a_15_digit_legacy_number():
    assert looks_like_id_number("legacy 110105491231002 card")


def test_looks_like_id_number_ignores_a_20_digit_run():
    assert not looks_like_id_number("barcode 12345678901234567890 scanned")


def test_looks_like_id_number_ignores_short_numbers_and_masked_forms():
    assert not looks_like_id_number("item 1234567890123, loan 42, 110105********002X")


def test_id_number_pattern_match_is_the_whole_number():
    match = ID_NUMBER_PATTERN.search(f"x {SAMPLE_X} y")
    assert match is not None
    assert match.group() == SAMPLE_X


# --- properties --------------------------------------------------------------------------

if HAVE_HYPOTHESIS:
    valid_bodies = st.builds(
        lambda province, county, born, sequence: (
            f"{province}{county:04d}{born:%Y%m%d}{sequence:03d}"
        ),
        st.sampled_from(MAINLAND_PROVINCES),
        st.integers(0, 9999),
        st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
        st.integers(0, 999),
    )

    @given(valid_bodies)
    def test_property_body_plus_check_character_is_valid(body):
        assert check_character(body) == stdnum_check(body)
        result = check(body + check_character(body))
        assert result.status is IdStatus.VALID
        assert result.normalized == body + check_character(body)
        assert result.sex == ("M" if int(body[16]) % 2 else "F")

    @given(valid_bodies, st.sampled_from("0123456789X"))
    def test_property_any_other_last_char_is_invalid_check_digit(body, last):
        if last == check_character(body):
            return
        result = check(body + last)
        assert (result.status, result.rule) == (IdStatus.INVALID, "id_check_digit")

    @given(st.text(max_size=40))
    def test_property_check_id_number_never_raises_on_any_text(raw):
        result = check(raw)
        assert isinstance(result.status, IdStatus)
        if result.status in (IdStatus.VALID, IdStatus.PERMIT):
            assert result.normalized is not None and len(result.normalized) == 18
        else:
            assert result.normalized is None

    @given(st.text(max_size=40))
    def test_property_mask_never_reveals_more_than_half_below_18_chars(raw):
        masked = mask_id_number(raw)
        if len(masked) < 18:
            assert 2 * sum(1 for c in masked if c != "*") <= len(masked)
