"""Referral codes drawn many at once are spelled and spread as codes drawn one by one."""

from __future__ import annotations

from collections import Counter

from loyalty.referrals import CODE_LENGTH, new_referral_code, new_referral_codes

ALPHABET = set("ABCDEFGHJKMNPQRSTUVWXYZ23456789")


def test_codes_drawn_together_are_as_many_well_formed_and_evenly_spread() -> None:
    # When 20,000 codes are drawn at once (and a few edge counts)
    codes = new_referral_codes(20_000)
    assert new_referral_codes(0) == [] and len(new_referral_codes(1)) == 1

    # Then each is ten letters of the alphabet, with no two alike
    assert len(codes) == 20_000 == len(set(codes))
    assert all(len(c) == CODE_LENGTH and set(c) <= ALPHABET for c in codes)
    assert len(new_referral_code()) == CODE_LENGTH

    # And every letter is about as frequent at every position, the last one included
    # (a draw spelled from too few bits would leave the high positions skewed)
    for position in range(CODE_LENGTH):
        counts = Counter(c[position] for c in codes)
        assert set(counts) == ALPHABET
        assert max(counts.values()) < 2 * min(counts.values())
