"""Phone numbers as the importer stores them (E.164), with phonenumbers' outcome at less cost.

phonenumbers' parser took a good part of an import's parsing time. Here a number
written as `+` and digits is built without the parser when that cannot change what
the parser makes of it. Validity is always `phonenumbers.is_valid_number`'s: for a
country code of one region, its test of the number (lengths, then the pattern in
full) against each kind of number of that region's metadata, asking first about the
kinds most numbers are.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata
from phonenumbers.re_util import re_compile

__all__ = ["normal_phone", "valid_number"]

# The library keeps the metadata's compiled patterns rather than asking `re` for each
# of the ten or so a number is checked against (a third of a number's check).
phonenumbers.enable_pattern_cache()

_PLUS_DIGITS = re.compile(r"\+[1-9][0-9]{3,18}")
#: The country codes phonenumbers knows, by their digits.
_COUNTRY_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
# National numbers phonenumbers' parser takes as they are (it accepts 2 to 17 digits).
_MIN_NATIONAL = 4
_MAX_NATIONAL = 17


def normal_phone(value: str, region: str) -> str:
    """The number in E.164 (as stored), or ValueError / NumberParseException.

    A number written as `+` and digits, whose digits after the country code cannot
    start with a national prefix, parses to that country code and those digits: it
    is its own E.164 when valid. Any other text, or a number found invalid, goes
    through phonenumbers' parser.
    """
    built = _international(value)
    if built is not None and valid_number(*built):
        return value
    number = phonenumbers.parse(value, region)
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number for region {region} or +prefix")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _international(value: str) -> tuple[int, str] | None:
    """`+CC…` as phonenumbers parses it, when that needs no more than the country code:
    the country code and the national significant number."""
    if not _PLUS_DIGITS.fullmatch(value):
        return None
    digits = value[1:]
    for width in (1, 2, 3):
        country_code = _COUNTRY_CODES.get(digits[:width])
        if country_code is not None:
            national = digits[width:]
            break
    else:
        return None
    if not _MIN_NATIONAL <= len(national) <= _MAX_NATIONAL or national[0] == "0":
        return None  # too short or long, or an Italian leading zero: the parser decides
    prefix = _national_prefix(country_code)
    if prefix is None or prefix.match(national):
        return None  # a national prefix the parser might strip
    return country_code, national


@functools.cache
def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    """What phonenumbers strips as a national prefix for the country code (`(?!)` when
    nothing), or None when the country has no metadata."""
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    return re.compile(metadata.national_prefix_for_parsing or "(?!)")


def valid_number(country_code: int, national: str) -> bool:
    """`phonenumbers.is_valid_number` of the number with that country code and national
    significant number (no leading zero)."""
    kinds = _kinds(country_code)
    if kinds is None:
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
        return bool(phonenumbers.is_valid_number(number))
    # As phonenumbers' `is_valid_number_for_region`: the number fits the region's numbers
    # (the first kind) and one kind of them; which kind does not matter, so mobile and
    # fixed line are asked first.
    length = len(national)
    general, *specific = kinds
    lengths, pattern = general
    if (lengths and length not in lengths) or not pattern.fullmatch(national):
        return False
    return any(
        (not lengths or length in lengths) and pattern.fullmatch(national)
        for lengths, pattern in specific
    )


#: A kind of number as phonenumbers tests a number against it (`_is_number_matching_desc`):
#: the lengths it may have (any when empty), and the pattern it must match in full.
_Kind = tuple[frozenset[int], re.Pattern[str]]


@functools.cache
def _kinds(country_code: int) -> tuple[_Kind, ...] | None:
    """The numbers of a country code's one region, then the kinds of number phonenumbers
    tells a valid number by (`_number_type_helper`), mobile and fixed line first; None
    when the country code has several regions (which one a number is from depends on
    it) or none."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    if len(regions) != 1 or regions[0] == REGION_CODE_FOR_NON_GEO_ENTITY:
        return None
    metadata = PhoneMetadata.metadata_for_region(regions[0].upper())
    if metadata is None:
        return None
    general = metadata.general_desc
    if general is None or not general.national_number_pattern:
        return None  # phonenumbers' own check finds no number of the region valid
    # phonenumbers looks at mobile numbers only when their pattern is not the fixed lines'.
    mobile = () if metadata.same_mobile_and_fixed_line_pattern else (metadata.mobile,)
    descriptions = (
        general,
        *mobile,
        metadata.fixed_line,
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    )
    # A kind without a pattern matches no number; the patterns are phonenumbers' own,
    # compiled as it compiles them.
    return tuple(
        (frozenset(d.possible_length), re_compile(d.national_number_pattern))
        for d in descriptions
        if d is not None and d.national_number_pattern
    )
