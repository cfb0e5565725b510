"""The feature catalog: one entry per portrait column (name, family, meaning, window, unit).

The catalog is the contract between the portrait and everything downstream (training,
decisions, docs): `build_portrait` asserts that its output has exactly these columns, in
this order, and docs/features.md is generated from it (`fieldbank features --markdown`).
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES: tuple[str, ...] = (
    "party",
    "business",
    "household",
    "supply_chain",
    "bills",
    "credit",
    "region",
    "thin_file",
)
DTYPES = ("int64", "float64", "string")


@dataclass(frozen=True)
class Feature:
    """One portrait column.

    `fill_zero`: a party with no events in the family gets 0 (a true zero: no sales means
    revenue 0); otherwise it gets null (a ratio or a mean over nothing is unknown, not 0).
    """

    name: str
    family: str
    description: str
    window_days: int | None  # None: all history before as_of, or not a windowed aggregate
    unit: str
    dtype: str = "float64"
    fill_zero: bool = False

    def __post_init__(self) -> None:
        assert self.family in FAMILIES, f"{self.name}: unknown family {self.family!r}"
        assert self.dtype in DTYPES, f"{self.name}: unknown dtype {self.dtype!r}"
        assert self.name == self.name.lower() and " " not in self.name, self.name
        assert not (self.fill_zero and self.dtype == "string"), self.name


def count(name: str, family: str, description: str, window_days: int | None, unit: str = "count") -> Feature:
    return Feature(name, family, description, window_days, unit, dtype="int64", fill_zero=True)


def money(name: str, family: str, description: str, window_days: int | None) -> Feature:
    return Feature(name, family, description, window_days, "minor units", dtype="int64", fill_zero=True)


def ratio(name: str, family: str, description: str, window_days: int | None, unit: str = "ratio") -> Feature:
    return Feature(name, family, description, window_days, unit, dtype="float64", fill_zero=False)


def flag(name: str, family: str, description: str, window_days: int | None) -> Feature:
    return Feature(name, family, description, window_days, "flag (0/1)", dtype="int64", fill_zero=True)


def catalog() -> list[Feature]:
    """All features in output order (family by family)."""
    from fieldbank.portrait.families import ALL_FAMILIES

    out: list[Feature] = []
    for module in ALL_FAMILIES:
        out.extend(module.FEATURES)
    names = [f.name for f in out]
    assert len(names) == len(set(names)), "duplicate feature names in the catalog"
    return out


def markdown() -> str:
    """docs/features.md, generated from the catalog."""
    feats = catalog()
    lines = [
        "# Portrait features",
        "",
        "Generated from the catalog in `src/fieldbank/portrait/` by `fieldbank features --markdown`;",
        "do not edit by hand.",
        "",
        "A portrait is one row per party (created before the `as_of` date D) per D. Every feature",
        "uses only events with a timestamp < D (midnight UTC). A window of *w* days means events in",
        "[D - w days, D). Counts and sums are 0 when there is no data; ratios and means are null",
        "(unknown) when their denominator is empty. Money is integer minor units.",
        "",
        f"{len(feats)} features in {len({f.family for f in feats})} families.",
        "",
    ]
    for family in FAMILIES:
        fam = [f for f in feats if f.family == family]
        if not fam:
            continue
        lines += [f"## {family}", "", "| feature | window | unit | type | meaning |", "|---|---|---|---|---|"]
        for f in fam:
            window = f"{f.window_days} d" if f.window_days else "all history"
            lines.append(f"| `{f.name}` | {window} | {f.unit} | {f.dtype} | {f.description} |")
        lines.append("")
    return "\n".join(lines)
