"""`+` and digits numbers are built without phonenumbers' parser, with the same outcome."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from loyalty.member_rows import normal_phone

HAND_PICKED = [
    "+48601234567",
    "+48 601 234 567",
    "601234567",
    "+390612345678",  # an Italian leading zero
    "+3906123456789",
    "+5491123456789",  # Argentina's mobile 9, which the parser handles
    "+5215512345678",  # Mexico's former mobile 1
    "+78123456789",
    "+12015550123",
    "+4420 7946 0958",
    "+442079460958",
    "+0123456789",
    "+999123456",
    "+48",
    "+4860",
    "+486012345678901234567",
    "\uff0b48601234567",  # a full-width plus
]


def reference(value: str, region: str) -> str:
    """phonenumbers' parser, then its validity check and E.164."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        return f"unparsable: {exc}"
    if not phonenumbers.is_valid_number(number):
        return "invalid"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def outcome(value: str, region: str) -> str:
    try:
        return normal_phone(value, region)
    except phonenumbers.NumberParseException as exc:
        return f"unparsable: {exc}"
    except ValueError:
        return "invalid"


def every_region_numbers() -> list[str]:
    """Each region's example numbers of every type in E.164, and variants one digit off."""
    rng = random.Random(14)
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.append(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                )
    variants = []
    for number in numbers:
        digits = list(number[1:])
        at = rng.randrange(len(digits))
        changed = [*digits[:at], str(rng.randrange(10)), *digits[at + 1 :]]
        longer = [*digits[:at], str(rng.randrange(10)), *digits[at:]]
        shorter = [*digits[:at], *digits[at + 1 :]]
        variants += ["+" + "".join(d) for d in (changed, longer, shorter)]
    return numbers + variants


@pytest.mark.parametrize("value", HAND_PICKED)
@pytest.mark.parametrize("region", ["PL", "US", "IT"])
def test_a_number_comes_out_as_phonenumbers_parses_it(value: str, region: str) -> None:
    assert outcome(value, region) == reference(value, region)


def test_every_regions_numbers_come_out_as_phonenumbers_parses_them() -> None:
    # Given every region's example numbers, and numbers one digit off them
    numbers = every_region_numbers()
    assert len(numbers) > 2000

    # Then each is stored, rejected or found unparsable as phonenumbers' parser has it
    differ = [n for n in numbers if outcome(n, "PL") != reference(n, "PL")]
    assert differ == []


def test_random_numbers_of_every_country_code_come_out_as_phonenumbers_parses_them() -> None:
    # Given `+` and digits of every length after each country code, valid or not
    rng = random.Random(19)
    numbers = [
        f"+{code}{rng.randrange(1, 10)}{rng.randrange(10**length):0{length}d}"
        for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
        for length in range(2, 14)
        for _ in range(3)
    ]

    # Then each is stored, rejected or found unparsable as phonenumbers' parser has it
    assert len(numbers) > 7000
    differ = [n for n in numbers if outcome(n, "PL") != reference(n, "PL")]
    assert differ == []
