"""Feature quality report: labels by hand, IV/AUC on a planted signal, the HTML and the CLI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import typer
from portrait_handmade import AS_OF, hand_tables, write_lake_table
from typer.testing import CliRunner

from fieldbank.portrait import catalog, connect, execute_portrait, load_inputs
from fieldbank.portrait.commands import portrait_report_command
from fieldbank.portrait.report import feature_quality, labels, render_html
from fieldbank.portrait.testing import synthetic_tables

app = typer.Typer()
app.command("portrait-report")(portrait_report_command)
app.command("unused")(lambda: None)


def test_labels_by_hand(hand_lake: Path) -> None:
    table, observed = labels(hand_lake, AS_OF)
    # H1's loan L2 is open at D and defaults on 2025-06-20; F1's L4 opens the day after D and
    # never defaults; S1's L1 closed before D (not exposed); the rest have no loans.
    assert dict(zip(table["party_id"].to_pylist(), table["label"].to_pylist())) == {"F1": 0, "H1": 1}
    assert observed is False  # the lake's loans stop long before D + 365 days


def test_planted_signal_is_the_strongest(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for name, table in synthetic_tables(200, 6000, dt.date(2024, 9, 1), 300, seed=41).items():
        write_lake_table(lake, name, table)
    as_of = dt.date(2025, 6, 1)
    portrait = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=False), as_of)
    spend = portrait["hh_spend_minor_365d"].to_numpy()
    label = (spend > np.median(spend)).astype(np.int64)  # defaults planted on the big spenders
    label_table = pa.table({"party_id": portrait["party_id"], "label": pa.array(label)})
    rows = feature_quality(portrait, label_table)
    assert len(rows) == len(catalog())
    by_name = {q.name: q for q in rows}
    planted = by_name["hh_spend_minor_365d"]
    assert planted.auc == 1.0 and planted.direction == "+"
    assert planted.iv == max(q.iv for q in rows if q.iv is not None)
    assert by_name["party_kind"].coverage == 1.0
    expected_cov = 1 - portrait["biz_revenue_growth_90d"].null_count / portrait.num_rows
    assert by_name["biz_revenue_growth_90d"].coverage == expected_cov
    ivs = [q.iv for q in rows if q.iv is not None]
    assert ivs == sorted(ivs, reverse=True)
    page = render_html(rows, as_of, portrait.num_rows, label_table, True, 365)
    assert page.index("hh_spend_minor_365d") < page.index("party_tenure_days")
    assert "<script" not in page and "http" not in page  # self-contained


def test_report_command(hand_lake: Path) -> None:
    data_dir = hand_lake.parent
    result = CliRunner().invoke(app, ["portrait-report", "--as-of", AS_OF.isoformat(), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    page = (data_dir / "reports" / f"feature_quality_{AS_OF.isoformat()}.html").read_text()
    assert "2 with a label" in page and "censored" in page
    assert (data_dir / "portraits" / f"as_of={AS_OF.isoformat()}" / "part-0.parquet").exists()
