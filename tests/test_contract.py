"""The data contract: schemas are well-formed, round-trip through Parquet, and the docs match the code."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fieldbank import contract

DOCS = Path(__file__).resolve().parents[1] / "docs" / "data-contract.md"


def _one_row(table: contract.Table) -> pa.Table:
    """A valid row for every table, built from the column definitions."""
    ts = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
    values: dict[str, list] = {}
    for c in table.columns:
        if c.allowed is not None:
            v = c.allowed[0]
        elif c.type == contract.TIMESTAMP:
            v = ts
        elif pa.types.is_integer(c.type):
            v = max(c.min_value or 0, 1) if c.name != "birth_year" else 1980
        elif pa.types.is_boolean(c.type):
            v = False
        else:
            v = f"{c.name}-1"
        values[c.name] = [v]
    return pa.table(values, schema=table.schema)


@pytest.mark.parametrize("name", contract.TABLE_ORDER)
def test_schema_round_trips_through_parquet(name: str, tmp_path: Path) -> None:
    table = contract.TABLES[name]
    original = _one_row(table)
    pq.write_table(original, tmp_path / "t.parquet")
    back = pq.read_table(tmp_path / "t.parquet")
    assert back.schema.equals(table.schema)
    assert back.equals(original)


@pytest.mark.parametrize("name", contract.TABLE_ORDER)
def test_every_column_is_documented_and_money_is_integer(name: str) -> None:
    table = contract.TABLES[name]
    for c in table.columns:
        assert c.description, f"{name}.{c.name} has no description"
        if c.name.endswith("_minor"):
            assert c.type == pa.int64(), f"{name}.{c.name}: money must be int64 minor units"
            assert c.unit.startswith("minor units")
        if c.type == contract.TIMESTAMP:
            assert c.type.tz == "UTC"
        if c.references is not None:
            ref_table, ref_col = c.references.split(".")
            assert contract.TABLES[ref_table].primary_key == ref_col
            assert contract.TABLE_ORDER.index(ref_table) < contract.TABLE_ORDER.index(name)
        if c.not_before is not None:
            assert table.column(c.not_before).type == c.type
    assert not table.column(table.primary_key).nullable


def test_design_doc_columns_are_all_in_the_contract() -> None:
    expected = {
        "parties": "party_id kind region_id sector created_at birth_year declared_income_minor "
        "declared_assets_minor phone_hash device_hash",
        "payments": "txn_id ts payer_id payee_id amount_minor channel kind category",
        "invoices": "invoice_id supplier_id buyer_id issued_at due_at amount_minor paid_at",
        "bills": "bill_id party_id biller_kind due_at amount_minor paid_at",
        "loans": "loan_id party_id lender opened_at principal_minor term_days closed_at max_dpd "
        "defaulted_at written_off",
    }
    for name, cols in expected.items():
        assert contract.TABLES[name].column_names == cols.split()


def test_docs_are_generated_from_the_code() -> None:
    assert DOCS.read_text() == contract.markdown() + "\n", "run `make docs` to regenerate docs/data-contract.md"


def test_essential_categories_are_categories() -> None:
    assert contract.ESSENTIAL_CATEGORIES <= set(contract.CATEGORIES)
