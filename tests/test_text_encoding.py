"""circhub.domain.encoding: names and titles from legacy Chinese ILS data become UTF-8, or a rule.

Mojibake is made here the way a latin1 MySQL column makes it: GBK (or UTF-8) bytes read back
as Windows-1252, with the five bytes it leaves undefined passed through as U+0081 etc.
"""

from __future__ import annotations

import pytest

from circhub.domain.encoding import TEXT_ENCODING, NormalisedText, normalise_text

CP1252_UNDEFINED = {0x81, 0x8D, 0x8F, 0x90, 0x9D}


def as_latin1_column(raw: bytes) -> str:
    return "".join(chr(b) if b in CP1252_UNDEFINED else bytes([b]).decode("cp1252")
                   for b in raw)


@pytest.mark.parametrize("text", ["王明", "欧阳娜娜", "阿依古丽·买买提", "三体",
                                  "Python编程从入门到实践", "C语言程序设计"])
@pytest.mark.parametrize("codec", ["gbk", "gb18030", "utf-8"])
def test_chinese_bytes_decode_to_the_same_text(text, codec):
    result = normalise_text(text.encode(codec))
    assert (result.text, result.rule) == (text, None)


def test_characters_beyond_gbk_decode_from_their_gb18030_four_byte_form():
    rare = "𠀾𠁀"  # CJK extension B: no GBK form, four bytes each in GB18030
    assert normalise_text(rare.encode("gb18030")).text == rare


@pytest.mark.parametrize("text", ["王明", "欧阳娜娜", "阿依古丽·买买提", "三体", "张伟",
                                  "Python编程从入门到实践", "C语言程序设计", "红楼梦（上）"])
@pytest.mark.parametrize("codec", ["gbk", "utf-8"])
def test_mojibake_from_a_latin1_column_is_repaired(text, codec):
    result = normalise_text(as_latin1_column(text.encode(codec)))
    assert (result.text, result.rule, result.repaired) == (text, None, True)


@pytest.mark.parametrize("text", ["José", "Müller", "François", "São João", "Li Reader", "王明"])
def test_real_text_is_left_as_it_is(text):
    result = normalise_text(text)
    assert (result.text, result.rule, result.repaired) == (text, None, False)


@pytest.mark.parametrize(("value", "why"), [
    (b"\xff\xfe\xfd\xfc", "bytes no Chinese encoding decodes"),
    ("王\ufffd明", "a replacement character: decoded wrongly upstream"),
    (as_latin1_column("王明".encode("gbk"))[:-1], "a GBK character cut in half"),
    (as_latin1_column("丂丄".encode("gbk")), "rare GBK characters with ASCII trail bytes"),
    ("Ação", "one ideograph's worth between Latin letters: ambiguous"),
    ("\x81\x82\x83", "C1 control characters"),
])
def test_text_that_cannot_be_trusted_gets_the_rule_and_no_text(value, why):
    assert normalise_text(value) == NormalisedText(None, TEXT_ENCODING), why


def test_missing_and_blank_values_are_no_text_and_no_problem():
    assert normalise_text(None).text is None and normalise_text(None).rule is None
    assert normalise_text("  ").text is None and normalise_text("  ").rule is None
