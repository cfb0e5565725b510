"""Feature quality report: per feature, coverage, information value and univariate AUC
against the default label, as a self-contained HTML table sorted by strength.

Label for (party, D): 1 if one of the party's loans reached 90+ DPD (defaulted_at) in
[D, D + horizon). The population is the parties exposed to that risk: those with a loan
open at some time in [D, D + horizon) (opened before D + horizon, not closed before D).
Everyone else has no label (a party without a loan cannot default). When the lake's loans
do not reach D + horizon the labels are censored; the report says so.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from sklearn.metrics import roc_auc_score

from fieldbank.labels import DEFAULT_HORIZON_DAYS, default_labels
from fieldbank.portrait.catalog import catalog
from fieldbank.portrait.engine import midnight_utc, parquet_files

IV_BINS = 10
MIN_LABELED_ROWS = 20  # below this, IV and AUC are noise and are not reported


@dataclass(frozen=True)
class FeatureQuality:
    name: str
    family: str
    coverage: float  # non-null share over all portrait rows
    iv: float | None  # information value over the labeled rows (quantile bins + a null bin)
    auc: float | None  # univariate AUC over labeled rows with a value, oriented to be >= 0.5
    direction: str  # "+" higher value = more defaults, "-" the reverse, "" unknown


def labels(lake_dir: Path, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS) -> tuple[pa.Table, bool]:
    """(party_id, label) for the exposed population (fieldbank.labels), and whether the
    horizon is fully observed (the lake's loans saw events up to D + horizon)."""
    table = default_labels(lake_dir, as_of, horizon_days, "exposed", exclude_in_default=False)
    files = parquet_files(Path(lake_dir) / "loans")
    if not files:
        return table, False
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    last_seen = con.execute(
        "SELECT greatest(max(opened_at), max(closed_at), max(defaulted_at)) FROM read_parquet($paths)",
        {"paths": [str(f) for f in files]},
    ).fetchone()[0]
    con.close()
    return table, last_seen is not None and last_seen >= midnight_utc(as_of + dt.timedelta(days=horizon_days))


def _iv(x: np.ndarray, y: np.ndarray, is_null: np.ndarray) -> float:
    """Information value of quantile bins of x (plus one bin for nulls), with 0.5 smoothing."""
    bins = np.full(len(x), -1, dtype=np.int64)
    present = ~is_null
    if present.any():
        edges = np.unique(np.quantile(x[present], np.linspace(0, 1, IV_BINS + 1)[1:-1]))
        bins[present] = np.searchsorted(edges, x[present], side="right")
    bad_total, good_total = y.sum(), len(y) - y.sum()
    iv = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        bad = (y[in_bin].sum() + 0.5) / (bad_total + 0.5)
        good = ((in_bin.sum() - y[in_bin].sum()) + 0.5) / (good_total + 0.5)
        iv += (good - bad) * math.log(good / bad)
    return float(iv)


def feature_quality(portrait: pa.Table, label_table: pa.Table) -> list[FeatureQuality]:
    """Quality of every catalog feature; sorted by IV (strongest first), unlabeled last."""
    n = portrait.num_rows
    assert n > 0, "empty portrait"
    joined = portrait.join(label_table, "party_id", join_type="inner")
    y = joined["label"].to_numpy() if joined.num_rows else np.array([], dtype=np.int64)
    can_score = joined.num_rows >= MIN_LABELED_ROWS and 0 < y.sum() < len(y)
    out = []
    for f in catalog():
        coverage = 1.0 - portrait[f.name].null_count / n
        iv = auc = None
        direction = ""
        if can_score:
            col = joined[f.name]
            is_null = col.is_null().to_numpy(zero_copy_only=False)
            if f.dtype == "string":
                # Categories are encoded by their bad rate in this sample (optimistic; for ranking only).
                cats = np.asarray(col.fill_null("<null>").to_pylist(), dtype=object)
                rate = {c: y[cats == c].mean() for c in np.unique(cats)}
                x = np.array([rate[c] for c in cats], dtype=float)
                is_null = np.zeros(len(x), dtype=bool)
            else:
                x = col.cast(pa.float64()).fill_null(0.0).to_numpy()
            iv = _iv(x, y, is_null)
            present = ~is_null
            if present.sum() >= MIN_LABELED_ROWS and 0 < y[present].sum() < present.sum():
                raw = float(roc_auc_score(y[present], x[present]))
                auc, direction = (raw, "+") if raw >= 0.5 else (1.0 - raw, "-")
        out.append(FeatureQuality(f.name, f.family, coverage, iv, auc, direction))
    return sorted(out, key=lambda q: (q.iv is None, -(q.iv or 0.0), q.name))


def render_html(
    rows: list[FeatureQuality], as_of: dt.date, portrait_rows: int, label_table: pa.Table, observed: bool,
    horizon_days: int,
) -> str:
    labeled = label_table.num_rows
    bad = int(np.asarray(label_table["label"]).sum()) if labeled else 0
    note = "" if observed else (
        "<p class=warn>The lake's loans do not reach D + horizon: labels are censored (defaults after the "
        "last recorded loan event are missing), so IV and AUC understate or mislead.</p>"
    )
    body = []
    for q in rows:
        strength = "strong" if (q.iv or 0) >= 0.3 else "medium" if (q.iv or 0) >= 0.1 else "weak"
        body.append(
            f"<tr class={strength}><td>{html.escape(q.name)}</td><td>{html.escape(q.family)}</td>"
            f"<td>{q.coverage:.1%}</td>"
            f"<td>{'' if q.iv is None else f'{q.iv:.3f}'}</td>"
            f"<td>{'' if q.auc is None else f'{q.auc:.3f}'}</td><td>{q.direction}</td></tr>"
        )
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Feature quality as of {as_of}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; }}
th {{ text-align: left; background: #f4f4f4; }} td:nth-child(n+3) {{ text-align: right; }}
tr.strong td:first-child {{ font-weight: bold; }} tr.weak {{ color: #777; }}
.warn {{ color: #a40; }}
</style></head><body>
<h1>Feature quality, portrait as of {as_of}</h1>
<p>{portrait_rows:,} parties; {labeled:,} with a label (a loan open in the {horizon_days} days from D),
{bad:,} of them defaulted (90+ DPD) in that window
({(bad / labeled if labeled else 0):.1%}).
IV: information value over 10 quantile bins plus a null bin (0.1 medium, 0.3 strong). AUC: univariate,
oriented to be at least 0.5; direction + means higher values go with more defaults.
Coverage: share of all parties with a value.</p>
{note}
<table><thead><tr><th>feature</th><th>family</th><th>coverage</th><th>IV</th><th>AUC</th><th>dir</th></tr>
</thead><tbody>
{chr(10).join(body)}
</tbody></table></body></html>
"""


def report_path(data_dir: Path, as_of: dt.date) -> Path:
    return Path(data_dir) / "reports" / f"feature_quality_{as_of.isoformat()}.html"
