"""The model report: one self-contained HTML file (Plotly, its JS inlined: no network).

Written next to the model in the registry folder, so a validator reads exactly the numbers
of the model version they audit.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from sklearn.metrics import roc_auc_score, roc_curve

from fieldbank.risk.metrics import calibration_table

PSI_BINS = 10
TOP_FEATURES = 20  # in the importance chart
PSI_FEATURES = 10
THIN_FILE_DAYS = 365
MAX_REGIONS = 30  # segments shown; the rest folded into "other"
SECTIONS = ("Summary", "Uplift", "Metrics", "ROC", "KS", "Calibration", "Score distribution", "Stability (PSI)",
            "Feature importance", "Segments", "Data")


@dataclass
class ReportInputs:
    name: str
    train: pd.DataFrame
    oot: pd.DataFrame
    preds: dict  # model -> (pd_train, pd_oot)
    metrics: dict  # model -> {"train": {...}, "oot": {...}}
    uplift: list[dict]
    truth_oot: np.ndarray | None
    models: object  # PortraitModels
    table: object  # ModellingTable
    split: str = ""


def psi(expected: pd.Series, actual: pd.Series) -> float:
    """Population stability index of `actual` against `expected` (train): decile bins of the
    expected values (categories as they are), a bin for missing, shares floored at 1e-4."""
    e, a = expected, actual
    if pd.api.types.is_numeric_dtype(e):
        e, a = pd.to_numeric(e, errors="coerce").astype(float), pd.to_numeric(a, errors="coerce").astype(float)
        edges = np.unique(np.nanquantile(e, np.linspace(0, 1, PSI_BINS + 1)[1:-1])) if e.notna().any() else np.array([])
        def binned(s: pd.Series) -> pd.Series:
            out = pd.Series(np.searchsorted(edges, s.to_numpy(), side="right"), index=s.index).astype(str)
            return out.where(s.notna(), "missing")
        e, a = binned(e), binned(a)
    else:
        e, a = e.astype(str), a.astype(str)
    cats = sorted(set(e) | set(a))
    pe = e.value_counts(normalize=True).reindex(cats, fill_value=0).clip(lower=1e-4)
    pa_ = a.value_counts(normalize=True).reindex(cats, fill_value=0).clip(lower=1e-4)
    return float(((pa_ - pe) * np.log(pa_ / pe)).sum())


def _div(fig: go.Figure) -> str:
    fig.update_layout(height=380, margin=dict(l=50, r=20, t=40, b=40), template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=False)


def _table(rows: list[dict], columns: list[str], fmt: dict | None = None) -> str:
    fmt = fmt or {}
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            if isinstance(v, float):
                v = format(v, fmt.get(c, ".4f")) if not np.isnan(v) else ""
            cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def segments(frame: pd.DataFrame, pd_: np.ndarray) -> pd.DataFrame:
    """Segment columns used by the report: kind, region, thin vs thick credit file."""
    out = pd.DataFrame(index=frame.index)
    out["kind"] = frame["party_kind"].astype(str)
    regions = frame["party_region_id"].astype(str)
    top = regions.value_counts().head(MAX_REGIONS).index
    out["region"] = regions.where(regions.isin(top), "other")
    # Thin file: a credit history younger than a year (most borrowers here have one loan, so a
    # loan count would put nearly everyone in one group).
    age_days = pd.to_numeric(frame["credit_file_age_days"]).fillna(0)
    out["credit_file"] = np.where(age_days < THIN_FILE_DAYS, f"thin (< {THIN_FILE_DAYS} d of credit history)",
                                  f"thick (>= {THIN_FILE_DAYS} d)")
    out["label"] = frame["label"].to_numpy()
    out["pd"] = pd_
    return out


def segment_rows(seg: pd.DataFrame) -> list[dict]:
    rows = []
    for dim in ("kind", "credit_file", "region"):
        for value, g in seg.groupby(dim, sort=True):
            y = g["label"].to_numpy()
            auc = float(roc_auc_score(y, g["pd"])) if 0 < y.sum() < len(y) else float("nan")
            rows.append({"segment": dim, "value": value, "rows": len(g), "defaults": int(y.sum()),
                         "bad rate": float(y.mean()), "mean PD": float(g["pd"].mean()), "AUC": auc})
    return rows


def render_report(r: ReportInputs) -> str:
    from fieldbank.risk.explain import lgbm_contributions
    from fieldbank.risk.portrait_training import CHAMPION, MODEL_KEYS, pd_to_points

    y_tr, y_oot = r.train["label"].to_numpy(), r.oot["label"].to_numpy()
    champ_tr, champ_oot = r.preds[CHAMPION]
    parts: list[str] = []
    t = r.table
    parts.append(f"<h2 id=summary>Summary</h2><p>Model <b>{html.escape(r.name)}</b>, champion <b>{CHAMPION}</b> "
                 f"(LightGBM on every portrait feature, monotone constraints, calibrated). {html.escape(t.describe())}. "
                 f"Training: {len(r.train):,} rows ({int(y_tr.sum()):,} defaults), as_of "
                 f"{r.train['as_of'].min()}..{r.train['as_of'].max()}; out-of-time: {len(r.oot):,} rows "
                 f"({int(y_oot.sum()):,} defaults), as_of {t.oot_date}. Data fingerprint (sha256 of the portrait "
                 f"files): <code>{t.fingerprint[:16]}</code>. Split: {html.escape(r.split)}.</p>")
    parts.append("<h2 id=uplift>Uplift: traditional vs portrait vs both</h2><p>Same out-of-time borrowers, same "
                 "split, same algorithm; only the features differ. On simulated data, the simulator's true PD of the "
                 "label's own event on the same rows is the reference ceiling: P(this party's open loan reaches 90+ "
                 "DPD within the label's horizon), by Monte Carlo continuation of the economy from the party's full "
                 "hidden state at the as_of date (cash, informal debt, installments paid, traits), which no model "
                 "sees. A model can come close to it, not above it beyond noise.</p>"
                 + _table(r.uplift, ["model", "features", "n_features", "oot_auc", "oot_ks", "oot_ece",
                                     "auc_minus_traditional"]))
    metric_rows = []
    for k in MODEL_KEYS:
        for split in ("train", "oot"):
            m = r.metrics[k][split]
            metric_rows.append({"model": k, "split": split, **{c: m.get(c, float("nan")) for c in
                                ("auc", "gini", "ks", "brier", "log_loss", "ece", "bad_rate", "mean_pd")},
                                "rows": m["rows"]})
    parts.append("<h2 id=metrics>Metrics, train vs out-of-time</h2>"
                 + _table(metric_rows, ["model", "split", "rows", "auc", "gini", "ks", "brier", "log_loss", "ece",
                                        "bad_rate", "mean_pd"]))

    roc = go.Figure()
    for k in MODEL_KEYS:
        fpr, tpr, _ = roc_curve(y_oot, r.preds[k][1])
        roc.add_scatter(x=fpr, y=tpr, name=f"{k} OOT (AUC {r.metrics[k]['oot']['auc']:.3f})", mode="lines")
    fpr, tpr, _ = roc_curve(y_tr, champ_tr)
    roc.add_scatter(x=fpr, y=tpr, name=f"{CHAMPION} train", mode="lines", line=dict(dash="dot"))
    if r.truth_oot is not None:
        fpr, tpr, _ = roc_curve(y_oot, r.truth_oot)
        roc.add_scatter(x=fpr, y=tpr, name="simulator true PD (ceiling)", mode="lines", line=dict(dash="dash"))
    roc.add_scatter(x=[0, 1], y=[0, 1], name="random", mode="lines", line=dict(color="grey", dash="dot"))
    roc.update_layout(title="ROC, out-of-time", xaxis_title="false positive rate", yaxis_title="true positive rate")
    parts.append("<h2 id=roc>ROC</h2>" + _div(roc))

    points_oot = pd_to_points(champ_oot)
    order = np.argsort(points_oot)
    bads = np.cumsum(y_oot[order]) / max(y_oot.sum(), 1)
    goods = np.cumsum(1 - y_oot[order]) / max((1 - y_oot).sum(), 1)
    ks = go.Figure()
    ks.add_scatter(x=points_oot[order], y=bads, name="defaults (cumulative)", mode="lines")
    ks.add_scatter(x=points_oot[order], y=goods, name="repaid (cumulative)", mode="lines")
    ks.add_scatter(x=points_oot[order], y=bads - goods, name=f"gap (KS {r.metrics[CHAMPION]['oot']['ks']:.3f})",
                   mode="lines")
    ks.update_layout(title=f"KS curve, {CHAMPION}, out-of-time", xaxis_title="score points (higher = safer)")
    parts.append("<h2 id=ks>KS</h2>" + _div(ks))

    cal = go.Figure()
    for split, y, p in (("train", y_tr, champ_tr), ("OOT", y_oot, champ_oot)):
        ct = calibration_table(y, p)
        cal.add_scatter(x=[c["mean_pd"] for c in ct], y=[c["observed_bad_rate"] for c in ct], name=split,
                        mode="lines+markers")
    top = float(max(champ_oot.max(), champ_tr.max()))
    cal.add_scatter(x=[0, top], y=[0, top], name="perfect", mode="lines", line=dict(color="grey", dash="dot"))
    cal.update_layout(title=f"Calibration, {CHAMPION} (10 equal-count bins; ECE OOT "
                            f"{r.metrics[CHAMPION]['oot']['ece']:.4f})",
                      xaxis_title="mean predicted PD", yaxis_title="observed default rate")
    parts.append("<h2 id=calibration>Calibration</h2>" + _div(cal))

    dist = go.Figure()
    for label, name in ((0, "repaid"), (1, "defaulted")):
        dist.add_histogram(x=points_oot[y_oot == label], name=name, histnorm="probability", opacity=0.6, nbinsx=40)
    dist.update_layout(barmode="overlay", title="Score distribution by outcome, out-of-time",
                       xaxis_title="score points (600 at 50:1 odds, 20 points to double)")
    parts.append("<h2 id=score-distribution>Score distribution</h2>" + _div(dist))

    champion = r.models.models[CHAMPION]
    sample = r.train.sample(min(len(r.train), 5000), random_state=0)
    contrib, _ = lgbm_contributions(champion, sample)
    importance = contrib.abs().mean().sort_values(ascending=False)
    psi_rows = [{"variable": "score (champion PD)", "PSI": psi(pd.Series(champ_tr), pd.Series(champ_oot))}]
    for f in importance.index[:PSI_FEATURES]:
        psi_rows.append({"variable": f, "PSI": psi(r.train[f], r.oot[f])})
    for row in psi_rows:
        row["reading"] = "stable" if row["PSI"] < 0.1 else "watch" if row["PSI"] < 0.25 else "shifted"
    parts.append("<h2 id=stability>Stability (PSI), train vs out-of-time</h2><p>Decile bins of the training "
                 "values; below 0.1 stable, 0.1-0.25 watch, above 0.25 shifted.</p>"
                 + _table(psi_rows, ["variable", "PSI", "reading"]))

    imp = importance.head(TOP_FEATURES)[::-1]
    fig = go.Figure(go.Bar(x=imp.to_numpy(), y=list(imp.index), orientation="h"))
    fig.update_layout(title=f"Feature importance, {CHAMPION}: mean |TreeSHAP contribution| (log-odds)",
                      height=max(380, 22 * len(imp)))
    parts.append("<h2 id=importance>Feature importance</h2>" + fig.to_html(full_html=False, include_plotlyjs=False))

    seg = segments(r.oot, champ_oot)
    parts.append("<h2 id=segments>Performance by segment (champion, out-of-time)</h2>"
                 f"<p>Thin file: first loan less than {THIN_FILE_DAYS} days before the as_of date.</p>"
                 + _table(segment_rows(seg), ["segment", "value", "rows", "defaults", "bad rate", "mean PD", "AUC"]))
    parts.append(f"<h2 id=data>Data</h2><p>Portrait files:</p><ul>"
                 + "".join(f"<li><code>{html.escape(p)}</code></li>" for p in t.portrait_files) + "</ul>"
                 f"<p>Label: any loan of the party reaches 90+ days past due in [D, D + {t.horizon_days} d). "
                 f"Population: {html.escape(t.population)}. Unlabelled dates excluded: "
                 f"{', '.join(map(str, t.unlabelled_dates)) or 'none'}.</p>")
    nav = " · ".join(SECTIONS)
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Model report: {html.escape(r.name)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ padding: 3px 9px; border-bottom: 1px solid #ddd; }} th {{ text-align: left; background: #f4f4f4; }}
td {{ text-align: right; }} td:first-child {{ text-align: left; }}
</style></head><body>
<h1>Model report: {html.escape(r.name)}</h1>
<p>Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}. Sections: {nav}.</p>
{''.join(parts)}
</body></html>
"""
