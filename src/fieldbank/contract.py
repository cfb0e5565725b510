"""The data contract: the event tables' schemas, the single source of truth.

Every stage that reads or writes events (simulate, ingest, portrait) uses these
definitions; docs/data-contract.md is generated from them (`fieldbank contract --markdown`).

Money is integer minor units (int64, e.g. fen or cents). Times are UTC timestamps with
microsecond precision. IDs are opaque strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

PARTY_KINDS = ("household", "business")
HOUSEHOLD_SECTORS = ("farming", "wage", "mixed")
BUSINESS_SECTORS = (
    "grocery",
    "restaurant",
    "agri_inputs",
    "wholesaler",
    "workshop",
    "farm_coop",
    "online_seller",
)
SECTORS = HOUSEHOLD_SECTORS + BUSINESS_SECTORS
PAYMENT_CHANNELS = ("qr", "online", "transfer", "payroll")
PAYMENT_KINDS = ("purchase", "refund", "wage", "transfer", "harvest_sale")
CATEGORIES = (
    "food",
    "utilities",
    "education",
    "health",
    "agri_inputs",
    "durables",
    "leisure",
    "wholesale",
    "clothing",
    "transport",
    "services",
)
# Spending a household cannot easily cut; the rest is discretionary.
ESSENTIAL_CATEGORIES = frozenset({"food", "utilities", "education", "health", "agri_inputs"})
BILLER_KINDS = ("electricity", "water", "telecom")

# Earliest timestamp any event may carry; ingest rejects anything before it.
MIN_EVENT_YEAR = 2000


@dataclass(frozen=True)
class Column:
    """One column: its Arrow type and the rules ingest enforces on it."""

    name: str
    type: pa.DataType
    description: str
    unit: str = ""
    nullable: bool = False
    allowed: tuple[str, ...] | None = None  # closed set of values
    min_value: int | None = None  # inclusive lower bound for integers
    references: str | None = None  # "table.column" that must exist
    not_before: str | None = None  # another column of the same row this must be >=

    def rules(self) -> list[str]:
        """The rules as human-readable text (used in docs and error messages)."""
        out = ["nullable" if self.nullable else "required"]
        if self.allowed is not None:
            out.append("one of " + ", ".join(self.allowed))
        if self.min_value is not None:
            out.append(f">= {self.min_value}")
        if self.references is not None:
            out.append(f"must exist in {self.references}")
        if self.not_before is not None:
            out.append(f">= {self.not_before}")
        if self.type == TIMESTAMP:
            out.append(f"UTC, not before {MIN_EVENT_YEAR}-01-01, not in the future")
        return out


@dataclass(frozen=True)
class Table:
    """One event table: columns, primary key and the time column it is partitioned by."""

    name: str
    description: str
    primary_key: str
    time_column: str  # the lake partitions by this column's month
    columns: tuple[Column, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        assert len(names) == len(set(names)), f"{self.name}: duplicate column names"
        assert self.primary_key in names, f"{self.name}: primary key {self.primary_key} missing"
        assert self.time_column in names, f"{self.name}: time column {self.time_column} missing"

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")


PARTIES = Table(
    name="parties",
    description="Every borrower or counterparty: a household or a business.",
    primary_key="party_id",
    time_column="created_at",
    columns=(
        Column("party_id", pa.string(), "Opaque party identifier."),
        Column("kind", pa.string(), "Household or business.", allowed=PARTY_KINDS),
        Column("region_id", pa.string(), "Region the party lives or trades in."),
        Column("sector", pa.string(), "Livelihood (households) or line of trade (businesses).", allowed=SECTORS),
        Column("created_at", TIMESTAMP, "When the party first appears in the data.", "UTC"),
        Column("birth_year", pa.int32(), "Birth year of the (household head or owner).", "year",
               nullable=True, min_value=1900),
        Column("declared_income_minor", pa.int64(), "Self-declared yearly income; noisy, unverified.",
               "minor units per year", nullable=True, min_value=0),
        Column("declared_assets_minor", pa.int64(), "Self-declared assets; noisy, unverified.",
               "minor units", nullable=True, min_value=0),
        Column("phone_hash", pa.string(), "Hash of the phone number (identity graph).", nullable=True),
        Column("device_hash", pa.string(), "Hash of the device fingerprint (identity graph).", nullable=True),
    ),
)

PAYMENTS = Table(
    name="payments",
    description="Money moving between two parties: purchases, refunds, wages, transfers, harvest sales.",
    primary_key="txn_id",
    time_column="ts",
    columns=(
        Column("txn_id", pa.string(), "Opaque transaction identifier."),
        Column("ts", TIMESTAMP, "When the payment settled.", "UTC"),
        Column("payer_id", pa.string(), "Party that paid.", references="parties.party_id"),
        Column("payee_id", pa.string(), "Party that was paid.", references="parties.party_id"),
        Column("amount_minor", pa.int64(), "Amount paid.", "minor units", min_value=1),
        Column("channel", pa.string(), "Payment rail.", allowed=PAYMENT_CHANNELS),
        Column("kind", pa.string(), "What the payment is for.", allowed=PAYMENT_KINDS),
        Column("category", pa.string(), "Spending category of a purchase.", nullable=True, allowed=CATEGORIES),
    ),
)

INVOICES = Table(
    name="invoices",
    description="Supply-chain invoices between a supplier and a buyer (trade credit).",
    primary_key="invoice_id",
    time_column="issued_at",
    columns=(
        Column("invoice_id", pa.string(), "Opaque invoice identifier."),
        Column("supplier_id", pa.string(), "Party that issued the invoice.", references="parties.party_id"),
        Column("buyer_id", pa.string(), "Party that owes the invoice.", references="parties.party_id"),
        Column("issued_at", TIMESTAMP, "When the invoice was issued.", "UTC"),
        Column("due_at", TIMESTAMP, "When payment is due.", "UTC", not_before="issued_at"),
        Column("amount_minor", pa.int64(), "Invoice amount.", "minor units", min_value=1),
        Column("paid_at", TIMESTAMP, "When it was paid; null while unpaid.", "UTC", nullable=True,
               not_before="issued_at"),
    ),
)

BILLS = Table(
    name="bills",
    description="Utility and telecom bills of a party.",
    primary_key="bill_id",
    time_column="due_at",
    columns=(
        Column("bill_id", pa.string(), "Opaque bill identifier."),
        Column("party_id", pa.string(), "Party billed.", references="parties.party_id"),
        Column("biller_kind", pa.string(), "Kind of biller.", allowed=BILLER_KINDS),
        Column("due_at", TIMESTAMP, "When payment is due.", "UTC"),
        Column("amount_minor", pa.int64(), "Billed amount.", "minor units", min_value=1),
        Column("paid_at", TIMESTAMP, "When it was paid; null while unpaid.", "UTC", nullable=True),
    ),
)

LOANS = Table(
    name="loans",
    description="The credit file: loans from any lender, with their outcome so far.",
    primary_key="loan_id",
    time_column="opened_at",
    columns=(
        Column("loan_id", pa.string(), "Opaque loan identifier."),
        Column("party_id", pa.string(), "Borrower.", references="parties.party_id"),
        Column("lender", pa.string(), "Lender that booked the loan."),
        Column("opened_at", TIMESTAMP, "Disbursement time.", "UTC"),
        Column("principal_minor", pa.int64(), "Principal disbursed.", "minor units", min_value=1),
        Column("term_days", pa.int32(), "Contractual term.", "days", min_value=1),
        Column("closed_at", TIMESTAMP, "When fully repaid or written off; null while open.", "UTC",
               nullable=True, not_before="opened_at"),
        Column("max_dpd", pa.int32(), "Worst days past due reached so far.", "days", min_value=0),
        Column("defaulted_at", TIMESTAMP, "First day at 90+ days past due; null if never.", "UTC",
               nullable=True, not_before="opened_at"),
        Column("written_off", pa.bool_(), "Whether the lender wrote the loan off."),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (PARTIES, PAYMENTS, INVOICES, BILLS, LOANS)}
# Load order: a table may only reference tables earlier in this order.
TABLE_ORDER: tuple[str, ...] = ("parties", "payments", "invoices", "bills", "loans")


def markdown() -> str:
    """docs/data-contract.md, generated from the definitions above."""
    lines = [
        "# Data contract",
        "",
        "Generated from `src/fieldbank/contract.py` by `fieldbank contract --markdown`; do not edit by hand.",
        "",
        "Money is an integer number of minor units (`*_minor`, int64). Times are UTC timestamps",
        "(microseconds). IDs are opaque strings. A portrait `as_of` D only sees events with a",
        "timestamp < D.",
        "",
        "Essential spending categories: " + ", ".join(sorted(ESSENTIAL_CATEGORIES)) + ".",
        "",
    ]
    for name in TABLE_ORDER:
        t = TABLES[name]
        lines += [
            f"## {t.name}",
            "",
            t.description,
            "",
            f"Primary key `{t.primary_key}` (unique); the lake partitions by month of `{t.time_column}`.",
            "",
            "| column | type | unit | meaning | rules |",
            "|---|---|---|---|---|",
        ]
        for c in t.columns:
            lines.append(f"| `{c.name}` | {c.type} | {c.unit} | {c.description} | {'; '.join(c.rules())} |")
        lines.append("")
    return "\n".join(lines)
