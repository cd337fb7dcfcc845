"""Phone numbers come out of the import's fast path as phonenumbers makes them."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from loyalty.phone_numbers import normal_phone, valid_number

#: Every kind of number phonenumbers tells apart.
KINDS = [kind for kind in vars(PhoneNumberType).values() if isinstance(kind, int)]


def by_phonenumbers(value: str, region: str) -> str | None:
    """What phonenumbers' parser and validity check make of the text (None: invalid)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def by_import(value: str, region: str) -> str | None:
    try:
        return normal_phone(value, region)
    except (ValueError, phonenumbers.NumberParseException):
        return None


def example_numbers() -> list[str]:
    """Each region's example number of each kind, as `+` and digits, and near misses:
    a digit more, a digit less, the last digit changed."""
    found = set()
    for region in phonenumbers.SUPPORTED_REGIONS | {"001"}:
        codes = (
            phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS
            if region == "001"
            else {phonenumbers.country_code_for_region(region)}
        )
        for code in codes:
            for kind in KINDS:
                if region == "001":
                    example = phonenumbers.example_number_for_non_geo_entity(code)
                else:
                    example = phonenumbers.example_number_for_type(region, kind)
                if example is None:
                    continue
                national = phonenumbers.national_significant_number(example)
                digits = f"{example.country_code}{national}"
                last = str((int(digits[-1]) + 1) % 10)
                found |= {digits, digits + "5", digits[:-1], digits[:-1] + last}
    return sorted(f"+{digits}" for digits in found)


@pytest.mark.parametrize("region", ["PL", "US"])
def test_every_regions_example_numbers_are_valid_or_not_as_phonenumbers_says(region: str) -> None:
    # Given every region's example numbers and near misses, written as + and digits
    numbers = example_numbers()

    # When the import normalises them, Then each comes out as phonenumbers makes it
    assert [by_import(n, region) for n in numbers] == [by_phonenumbers(n, region) for n in numbers]


def test_validity_is_phonenumbers_own_for_every_regions_example_numbers() -> None:
    # Given every region's example numbers and near misses, as country code and digits
    # (with no leading zero, which the import's fast path leaves to the parser)
    numbers = [phonenumbers.parse(n) for n in example_numbers()]
    numbers = [n for n in numbers if not n.italian_leading_zero]

    # Then each is valid exactly when phonenumbers says so
    assert [valid_number(n.country_code or 0, str(n.national_number)) for n in numbers] == [
        phonenumbers.is_valid_number(n) for n in numbers
    ]


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
    st.text("0123456789", min_size=1, max_size=16),
)
def test_any_international_number_is_valid_or_not_as_phonenumbers_says(
    country_code: int, digits: str
) -> None:
    # Given a country code and any digits after it
    value = f"+{country_code}{digits}"

    # Then the import makes of it what phonenumbers does
    assert by_import(value, "PL") == by_phonenumbers(value, "PL")
