"""The backtest's outputs: rich tables on the terminal, one self-contained HTML report (Plotly,
its JS inlined: no CDN, the machine may be offline) and a JSON of every figure."""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from rich.console import Console
from rich.table import Table

from fieldbank.decision.backtest import CURVE_LABELS, CURVE_NOTES, BacktestResult, Curve

MAX_CHART_POINTS = 600  # per curve: the sweep is exact, the chart is thinned
COLOURS = {"champion": "#1f77b4", "alternative": "#2ca02c", "traditional": "#d62728", "truth": "#7f7f7f"}


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2%}"


def _money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(int(minor)) // 100:,}.{abs(int(minor)) % 100:02d}"


def _interval(iv: tuple[float, float] | None, pct: bool = True) -> str:
    if not iv:
        return ""
    lo, hi = iv
    fmt = _pct if pct else (lambda v: "inf" if math.isinf(v) else f"{v:.1f}x")
    return f"{fmt(lo)} .. {fmt(hi)}"


def inclusion_rows(result: BacktestResult) -> list[dict]:
    inc = result.inclusion
    rows = []
    for role, curve in inc.curves.items():
        ex = curve.ex_ante_index(inc.target_bad_rate)
        at = curve.index_at(inc.target_bad_rate)
        rows.append({
            "cut-off on": f"{CURVE_LABELS[role]} [{result.applicants.model_keys.get(role, 'true_pd_12m')}]",
            f"approval @{inc.target_bad_rate:.0%}": _pct(inc.approval[role]),
            "approved": f"{int(curve.approved_n[at]) if at is not None else 0:,}",
            "90% interval": _interval(inc.interval.get(role)),
            "no-file approved": _pct(inc.no_credit_file_approval.get(role)),
            "ex-ante approval": _pct(float(curve.approval_rate[ex]) if ex is not None else 0.0),
            "ex-ante bad rate": _pct(float(curve.realized_bad_rate[ex]) if ex is not None else None),
        })
    return rows


def sensitivity_rows(result: BacktestResult) -> list[dict]:
    inc = result.inclusion
    champ = inc.approval["champion"]
    return [{"cut-off on": CURVE_LABELS[role],
             **{f"approval @{t:.0%}": _pct(v) for t, v in inc.approval_by_target[role].items()},
             f"bad rate @{champ:.1%} approved": _pct(inc.bad_rate_at_champion_approval[role])}
            for role in inc.curves]


POLICY_FIGURES = (  # (label, key, kind): what the policy table shows, one row each
    ("applicants approved", "approval_rate", "pct"), ("approved", "approved", "int"),
    ("declined", "declined", "int"), ("referred", "referred", "int"),
    ("expected default rate (model PD)", "expected_default_rate", "pct"),
    ("realized default rate", "realized_default_rate", "pct"),
    ("lent", "lent_minor", "money"), ("mean APR", "mean_apr_bps", "bps"),
    ("expected loss", "expected_loss_minor", "money"), ("realized loss", "realized_loss_minor", "money"),
    ("expected profit", "expected_profit_minor", "money"), ("realized profit", "realized_profit_minor", "money"),
    ("decisions per second", "decisions_per_s", "rate"),
)


def _fmt(value: float, kind: str, diff: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    sign = "+" if diff and value > 0 else ""
    if kind == "pct":
        return f"{sign}{value * 100:.2f} pt" if diff else _pct(value)
    if kind == "money":
        return sign + _money(int(value))
    if kind == "bps":
        return f"{sign}{value / 100:.2f}" + (" pt" if diff else "%")
    return f"{sign}{value:,.0f}"


def policy_rows(result: BacktestResult) -> list[dict]:
    """One row per figure; a column per policy (champion first) and the candidate's difference."""
    pols = result.policies
    if not pols:
        return []
    rows = []
    for label, key, kind in POLICY_FIGURES:
        row = {"figure": label, **{m["policy"]: _fmt(m[key], kind) for m in pols}}
        if len(pols) == 2 and kind != "rate":
            row["candidate - champion"] = _fmt(pols[1][key] - pols[0][key], kind, diff=True)
        rows.append(row)
    return rows


def print_tables(result: BacktestResult, console: Console) -> None:
    s = result.summary()
    console.print(f"{s['applicants']:,} applicants as of {s['as_of']} ({_pct(s['no_credit_file_share'])} without a "
                  f"credit file); realized bad rate if all approved {_pct(s['population_bad_rate'])}; "
                  f"outcomes: {s['outcome_source']}")
    for m in s["policies"]:
        console.print(f"{m['policy']} policy: {m['path']} (version {m['version']})")
    for title, rows in (("inclusion: approval rate at the target bad rate, same applicants", inclusion_rows(result)),
                        ("sensitivity: other targets; bad rate at the champion's approval", sensitivity_rows(result)),
                        ("policies replayed (champion first)", policy_rows(result))):
        if not rows:
            continue
        t = Table(title=title)
        for col in rows[0]:
            t.add_column(col, justify="left" if col in ("cut-off on", "figure") else "right")
        for r in rows:
            t.add_row(*(str(v) for v in r.values()))
        console.print(t)
    ratio = result.inclusion.ratio
    console.print(f"champion / traditional approval at {result.inclusion.target_bad_rate:.0%} bad rate: "
                  + (f"[bold]{ratio:.1f}x[/bold]" if ratio is not None else "[bold]unbounded[/bold] (traditional approves none)")
                  + (f" (90% bootstrap {_interval(result.inclusion.ratio_interval, pct=False)})"
                     if result.inclusion.ratio_interval else "")
                  + (f", bootstrap median {result.inclusion.ratio_median:.1f}x" if result.inclusion.ratio_median else "")
                  + " (goal ≥ 2x)")


def _thin(curve: Curve, keep: list[int]) -> np.ndarray:
    n = len(curve.approval_rate)
    idx = np.unique(np.r_[np.linspace(0, n - 1, min(n, MAX_CHART_POINTS)).round().astype(int),
                          np.asarray(keep, dtype=int)])
    return idx[(idx >= 0) & (idx < n)]


def _div(fig: go.Figure, height: int = 460) -> str:
    fig.update_layout(height=height, margin=dict(l=60, r=20, t=50, b=50), template="plotly_white",
                      legend=dict(orientation="h", y=-0.18))
    return fig.to_html(full_html=False, include_plotlyjs=False)


def inclusion_figure(result: BacktestResult) -> go.Figure:
    inc = result.inclusion
    fig = go.Figure()
    for role, c in inc.curves.items():
        at = c.index_at(inc.target_bad_rate)
        idx = _thin(c, [at] if at is not None else [])
        fig.add_trace(go.Scatter(
            x=c.approval_rate[idx], y=c.realized_bad_rate[idx], mode="lines", name=CURVE_LABELS[role],
            line=dict(color=COLOURS[role], dash="dot" if role == "truth" else "solid"),
            customdata=np.c_[c.cutoff_pd[idx], c.expected_bad_rate[idx]],
            hovertemplate="approval %{x:.1%}<br>realized bad rate %{y:.2%}<br>cut-off PD %{customdata[0]:.4f}"
                          "<br>expected bad rate %{customdata[1]:.2%}<extra></extra>"))
        if at is not None:
            fig.add_trace(go.Scatter(x=[c.approval_rate[at]], y=[c.realized_bad_rate[at]], mode="markers",
                                     marker=dict(color=COLOURS[role], size=10), showlegend=False,
                                     hovertemplate=f"{role}: approval %{{x:.1%}} at bad rate %{{y:.2%}}<extra></extra>"))
    for m in result.policies:
        fig.add_trace(go.Scatter(x=[m["approval_rate"]], y=[m["realized_default_rate"]], mode="markers+text",
                                 marker=dict(symbol="diamond", size=12, color="black"), text=[m["policy"]],
                                 textposition="top center", name=m["policy"]))
    fig.add_hline(y=inc.target_bad_rate, line_dash="dash", line_color="black",
                  annotation_text=f"target bad rate {inc.target_bad_rate:.0%}")
    fig.update_layout(title="Inclusion: approval rate vs realized bad rate across cut-offs",
                      xaxis=dict(title="approval rate (share of all applicants)", tickformat=".0%", range=[0, 1]),
                      yaxis=dict(title="realized bad rate of the approved", tickformat=".1%"))
    return fig


def calibration_figure(result: BacktestResult) -> go.Figure:
    """Expected (mean model PD) vs realized bad rate of the approved, across the champion's cut-offs."""
    c = result.inclusion.curves["champion"]
    idx = _thin(c, [])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=c.approval_rate[idx], y=c.realized_bad_rate[idx], name="realized", mode="lines",
                             line=dict(color=COLOURS["champion"])))
    fig.add_trace(go.Scatter(x=c.approval_rate[idx], y=c.expected_bad_rate[idx], name="expected (mean model PD)",
                             mode="lines", line=dict(color=COLOURS["champion"], dash="dash")))
    fig.update_layout(title="Champion: expected vs realized bad rate of the approved",
                      xaxis=dict(title="approval rate", tickformat=".0%", range=[0, 1]),
                      yaxis=dict(title="bad rate", tickformat=".1%"))
    return fig


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(result: BacktestResult) -> str:
    s = result.summary()
    inc = result.inclusion
    ratio = ("unbounded (the traditional policy approves nobody at the target)" if inc.ratio is None
             else f"{inc.ratio:.1f}x")
    goal = "met" if inc.ratio is None or inc.ratio >= 2 else "not met"
    reasons = [{"policy": r.name, "reason": k, "applicants": f"{v:,}"} for r in result.replays
               for k, v in r.decline_reasons.items()]
    econ = s["economics"]
    parts = [
        f"<h1>Policy backtest as of {s['as_of']}</h1>",
        f"<p>{s['applicants']:,} applicants (every party in the portrait; {_pct(s['no_credit_file_share'])} without a "
        f"credit file), {s['outcomes_known']:,} with a known outcome; realized bad rate if everyone were approved: "
        f"<b>{_pct(s['population_bad_rate'])}</b>.<br>Outcome: {html.escape(s['outcome_source'])}.<br>"
        f"Models: {html.escape(s['model_folder'])} {html.escape(json.dumps(s['models']))}; trained on as_of "
        f"{html.escape(', '.join(s['training_window'].get('as_of', [])))}, out-of-time "
        f"{html.escape(str(s['training_window'].get('oot_as_of')))}.</p>",
        f"<h2>Inclusion at a {inc.target_bad_rate:.0%} bad rate</h2>",
        f"<p>Champion / traditional approval at the target: <b>{ratio}</b> "
        f"(90% bootstrap interval {_interval(inc.ratio_interval, pct=False) or 'n/a'}, median "
        f"{'n/a' if inc.ratio_median is None else f'{inc.ratio_median:.1f}x'}, {inc.bootstrap_n} resamples "
        f"of the applicants); goal ≥ 2x: <b>{goal}</b>. A cut-off approves every applicant whose model score is at "
        "or below it (ties together); the approval at the target is the loosest cut-off whose approved applicants "
        "default at most at the target rate. The ex-ante cut-off is what a lender could set without outcomes: "
        "the loosest one whose mean model PD is at most the target.</p>",
        _table(inclusion_rows(result)),
        "<ul>" + "".join(f"<li><b>{html.escape(CURVE_LABELS[r])}</b>: {html.escape(CURVE_NOTES[r])}</li>"
                         for r in inc.curves) + "</ul>",
        "<p>How much the comparison depends on the target, and each curve's bad rate when it approves as many "
        "applicants as the champion does at the target:</p>",
        _table(sensitivity_rows(result)),
        _div(inclusion_figure(result), 520),
        _div(calibration_figure(result)),
        "<h2>Policies replayed</h2>",
        "<ul>" + "".join(f"<li><b>{html.escape(m['policy'])}</b>: {html.escape(m['path'])} (version "
                         f"{html.escape(m['version'])})</li>" for m in result.policies) + "</ul>",
        (_table(policy_rows(result)) if result.policies else "<p>No policy file given (--policy).</p>"),
        f"<p>Money: one loan per approved applicant, the limit set by the policy's terms, {econ['term_days']} days in "
        f"equal monthly installments (average balance {econ['balance_years']:.3f} x principal-years); a repaid loan "
        f"earns its APR minus cost of funds ({econ['cost_of_funds_bps']} bps) and operating cost "
        f"({econ['operating_cost_bps']} bps) on that balance; a defaulted loan earns nothing, pays those costs and "
        "loses LGD x principal. Expected figures weight by the champion's PD, realized ones use the outcome.</p>",
        "<h3>Top decline and refer reasons</h3>", _table(reasons),
        "<h2>Timings</h2>", _table([{"step": k, "seconds": f"{v:.2f}"} for k, v in s["seconds"].items()]),
    ]
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>fieldbank policy backtest {s['as_of']}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style>
</head><body>{''.join(parts)}<p style="color:#888">generated {generated} by fieldbank backtest</p></body></html>"""


def write_outputs(result: BacktestResult, html_path: Path) -> tuple[Path, Path]:
    """The HTML report and a JSON of every figure next to it, each written atomically."""
    html_path = Path(html_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = html_path.with_suffix(".json")
    for path, text in ((html_path, render_html(result)),
                       (json_path, json.dumps(_finite(result.summary()), indent=1, default=_json_default,
                                              allow_nan=False))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return html_path, json_path


def _finite(o: object) -> object:
    """NaN and infinity are not JSON: null (a rate with nothing to divide, an unbounded ratio)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)) and not math.isfinite(float(o)):
        return None
    return o


def _json_default(o: object) -> object:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o).__name__)
