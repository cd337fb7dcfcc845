"""SMS segments: GSM-7 (160, or 153 per part) unless any character needs UCS-2 (70, or 67)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["SmsSize", "measure"]

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Each of these takes two septets (escape + character).
_GSM_EXTENSION = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsSize:
    encoding: str
    units: int
    segments: int

    def cost(self, price_per_segment: Decimal) -> Decimal:
        return price_per_segment * self.segments


def measure(body: str) -> SmsSize:
    """How a carrier will split `body`."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in body):
        septets = sum(2 if c in _GSM_EXTENSION else 1 for c in body)
        return SmsSize("GSM-7", septets, 1 if septets <= 160 else -(-septets // 153))
    # UCS-2 counts UTF-16 code units: characters outside the BMP take two.
    units = len(body.encode("utf-16-le")) // 2
    return SmsSize("UCS-2", units, 1 if units <= 70 else -(-units // 67))
