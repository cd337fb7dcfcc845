"""SMS facts: GSM-7 / UCS-2 segment counting and opt-out keywords."""

from __future__ import annotations

import math

__all__ = ["HELP_WORDS", "OPT_IN_WORDS", "OPT_OUT_WORDS", "keyword_type", "segments"]

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: Extension characters cost two septets (escape + char).
_GSM_EXTENSION = set("^{}\\[~]|€\f")

OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def segments(body: str) -> tuple[int, str]:
    """(number of segments, "GSM-7" or "UCS-2") for an SMS body."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in body):
        septets = sum(2 if c in _GSM_EXTENSION else 1 for c in body)
        count = 1 if septets <= 160 else math.ceil(septets / 153)
        return count, "GSM-7"
    units = len(body.encode("utf-16-le")) // 2
    return (1 if units <= 70 else math.ceil(units / 67)), "UCS-2"


def keyword_type(body: str) -> str | None:
    """STOP, START or HELP when the whole trimmed message is such a keyword."""
    word = body.strip().upper()
    if word in OPT_OUT_WORDS:
        return "STOP"
    if word in OPT_IN_WORDS:
        return "START"
    if word in HELP_WORDS:
        return "HELP"
    return None
