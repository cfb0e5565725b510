"""Identity checks: the national ID number (format, birth date, check digit), age, and the
sanctions/blocklist file.

The ID number follows the 18-character resident identity number of GB 11643-1999 (the
scheme MYbank's borrowers carry): 6-digit region code, birth date YYYYMMDD, 3-digit sequence,
and an ISO 7064 MOD 11-2 check character (0-9 or X). Any bank can swap in its own scheme
here; the rest of the service only needs `check_national_id` -> birth date, or a DomainError.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from fieldbank.bank.domain import DomainError

ID_PATTERN = re.compile(r"^[0-9]{17}[0-9X]$")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # index: weighted sum mod 11
BLOCKLIST_KINDS = ("national_id_hash", "party_id", "phone_hash", "device_hash")
MAX_BLOCKLIST_ROWS = 1_000_000


def id_check_char(first17: str) -> str:
    assert len(first17) == 17 and first17.isdigit(), first17
    return ID_CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def check_national_id(value: str, field: str = "national_id", today: dt.date | None = None) -> dt.date:
    """The birth date encoded in a valid ID number; DomainError naming the field otherwise."""
    today = today or dt.datetime.now(dt.UTC).date()
    if not ID_PATTERN.match(value):
        raise DomainError(field, value, "18 characters: 17 digits then a digit or X")
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise DomainError(field, value, "characters 7-14 must be a valid birth date YYYYMMDD") from None
    if not dt.date(1900, 1, 1) <= born <= today:
        raise DomainError(field, value, f"birth date {born} must be between 1900-01-01 and today")
    if id_check_char(value[:17]) != value[17]:
        raise DomainError(field, value, "check digit does not match (ISO 7064 MOD 11-2)")
    return born


def age_years(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def hash_id(value: str) -> str:
    """The log and the blocklist keep ID numbers hashed, never in clear."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Blocklist:
    """Sanctions and blocked identities: CSV with columns kind,value,list,reason, where kind is
    one of BLOCKLIST_KINDS (ID numbers as SHA-256 hex: `fieldbank.decision.identity.hash_id`)."""

    path: Path
    entries: dict[tuple[str, str], str]  # (kind, value) -> list name

    @classmethod
    def load(cls, path: Path) -> "Blocklist":
        path = Path(path)
        try:
            with path.open(newline="") as f:
                reader = csv.DictReader(row for row in f if not row.startswith("#"))
                if reader.fieldnames is None or not {"kind", "value", "list"} <= set(reader.fieldnames):
                    raise ValueError(f"{path}: header must have kind,value,list (got {reader.fieldnames})")
                entries = {}
                for n, row in enumerate(reader, start=2):
                    if n > MAX_BLOCKLIST_ROWS:
                        raise ValueError(f"{path}: more than {MAX_BLOCKLIST_ROWS} rows")
                    kind, value = (row.get("kind") or "").strip(), (row.get("value") or "").strip()
                    if kind not in BLOCKLIST_KINDS or not value:
                        raise ValueError(f"{path} line {n}: kind {kind!r} must be one of {BLOCKLIST_KINDS}, value non-empty")
                    entries[(kind, value.lower() if kind != "party_id" else value)] = (row.get("list") or "").strip()
        except OSError as e:
            raise ValueError(f"{path}: cannot read the blocklist ({e.strerror or e})") from None
        return cls(path, entries)

    def matches(self, **values: str | None) -> list[str]:
        """The lists an applicant's identifiers appear on, e.g. matches(party_id=..., phone_hash=...)."""
        hits = []
        for kind, value in values.items():
            assert kind in BLOCKLIST_KINDS, kind
            if value:
                key = (kind, value if kind == "party_id" else value.lower())
                if key in self.entries:
                    hits.append(f"{kind}:{self.entries[key]}")
        return hits
