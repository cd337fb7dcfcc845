"""Phone numbers as the importer stores them (E.164), with phonenumbers' outcome at less cost.

phonenumbers' parser and its validity check took most of an import's parsing
time. Here a number written as `+` and digits is built without the parser when
that cannot change what the parser makes of it, and validity is worked out from
phonenumbers' own metadata, with the patterns it would try one after another
joined into one: the outcome is what `phonenumbers.is_valid_number` gives.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneMetadata

__all__ = ["normal_phone", "valid_number"]

_PLUS_DIGITS = re.compile(r"\+[1-9][0-9]{3,18}")
# National numbers phonenumbers' parser takes as they are (it accepts 2 to 17 digits).
_MIN_NATIONAL = 4
_MAX_NATIONAL = 17
#: The region of non-geographical numbers (+800, +808, …).
_NON_GEO = "001"
#: The kinds of number `phonenumbers.number_type` tries before fixed line and mobile.
_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
)


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
    national = phonenumbers.national_significant_number(number)
    if not valid_number(number.country_code or 0, national):
        raise ValueError(f"not a valid phone number for region {region} or +prefix")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _international(value: str) -> tuple[int, str] | None:
    """`+CC…` as phonenumbers parses it, when that needs no more than the country code:
    the country code and the national significant number."""
    if not _PLUS_DIGITS.fullmatch(value):
        return None
    digits = value[1:]
    for width in (1, 2, 3):
        country_code = int(digits[:width])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
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
    significant number (Italian leading zeros included)."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not regions:
        return False
    if len(regions) == 1:
        region: str | None = regions[0]
    else:
        region = _region_from_list(country_code, national)
    if region is None:
        return False
    pattern = _valid_pattern(country_code, region, len(national))
    return pattern is not None and pattern.fullmatch(national) is not None


def _region_from_list(country_code: int, national: str) -> str | None:
    """The region of a country code shared by several, as `region_code_for_number` finds it."""
    for region, leading_digits in _shared_regions(country_code):
        if leading_digits is not None:
            if leading_digits.match(national):
                return region
            continue
        pattern = _type_pattern(region, len(national))
        if pattern is not None and pattern.fullmatch(national):
            return region
    return None


@functools.cache
def _shared_regions(country_code: int) -> tuple[tuple[str, re.Pattern[str] | None], ...]:
    """The regions of the country code that have metadata, in order, with their leading
    digits when the metadata has them."""
    regions = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        leading = metadata.leading_digits
        regions.append((region, None if leading is None else re.compile(leading)))
    return tuple(regions)


@functools.cache
def _valid_pattern(country_code: int, region: str, length: int) -> re.Pattern[str] | None:
    """What a national number of `length` digits of the region must fully match to be
    valid there (`is_valid_number_for_region`), or None when none can be."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
    if metadata is None:
        return None
    if region != _NON_GEO and country_code != phonenumbers.country_code_for_valid_region(region):
        return None
    return _type_pattern_of(metadata, length)


@functools.cache
def _type_pattern(region: str, length: int) -> re.Pattern[str] | None:
    metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
    return None if metadata is None else _type_pattern_of(metadata, length)


def _type_pattern_of(metadata: PhoneMetadata, length: int) -> re.Pattern[str] | None:
    """One pattern for `_number_type_helper(…) != UNKNOWN` at that length: the general
    description and then any one kind of number; None when nothing can match."""
    general = _pattern_at(metadata.general_desc, length)
    if general is None:
        return None
    kinds = [_pattern_at(getattr(metadata, name), length) for name in _TYPES]
    if not metadata.same_mobile_and_fixed_line_pattern:
        kinds.append(_pattern_at(metadata.mobile, length))
    alternatives = [f"(?:{kind})" for kind in kinds if kind is not None]
    if not alternatives:
        return None
    # The general pattern as a lookahead that must reach the end, then one kind that must.
    return re.compile(f"(?=(?:{general})\\Z)(?:{'|'.join(alternatives)})")


def _pattern_at(desc: phonenumbers.PhoneNumberDesc | None, length: int) -> str | None:
    """The pattern of a description a number of `length` digits is matched against
    (`_is_number_matching_desc`), or None when it cannot match."""
    if desc is None:
        return None
    possible = desc.possible_length
    if possible and length not in possible:
        return None
    pattern: str | None = desc.national_number_pattern
    return pattern or None
