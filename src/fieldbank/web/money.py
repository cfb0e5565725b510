"""Money in forms and pages: minor units inside, "1,234.56" on screen."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from fieldbank.bank import domain

MINOR_PER_MAJOR = 100
AMOUNT_PATTERN = re.compile(r"^\d{1,13}(\.\d{1,2})?$")


class AmountError(ValueError):
    def __init__(self, field: str, value: str, rule: str) -> None:
        super().__init__(f"{field}={value!r}: {rule}")
        self.field, self.value, self.rule = field, value, rule


def parse_major(field: str, text: str) -> int:
    """'1,500.5' -> 150050 minor units; exact (Decimal), at most 2 decimals, 1..MAX_AMOUNT_MINOR."""
    cleaned = (text or "").strip().replace(",", "").replace(" ", "")
    if not AMOUNT_PATTERN.match(cleaned):
        raise AmountError(field, text, "a positive amount with at most 2 decimals, e.g. 1500 or 1500.50")
    try:
        minor = int(Decimal(cleaned) * MINOR_PER_MAJOR)
    except InvalidOperation:  # pragma: no cover - the pattern already rules this out
        raise AmountError(field, text, "not a number") from None
    if not 1 <= minor <= domain.MAX_AMOUNT_MINOR:
        raise AmountError(field, text, f"between 0.01 and {domain.MAX_AMOUNT_MINOR // MINOR_PER_MAJOR:,}")
    return minor


def fmt_minor(minor: int | None) -> str:
    if minor is None:
        return "–"
    sign = "-" if minor < 0 else ""
    major, cents = divmod(abs(int(minor)), MINOR_PER_MAJOR)
    return f"{sign}{major:,}.{cents:02d}"


def fmt_bps(bps: float | int | None) -> str:
    return "–" if bps is None else f"{bps / 100:.2f}%"
