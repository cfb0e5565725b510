"""Plotly figure specs (plain dicts: data + layout) for the dashboard, drawn in the browser by
the plotly.js that ships inside the installed plotly package."""

from __future__ import annotations

from typing import Any

from fieldbank.monitor.portfolio import BUCKET_NAMES, STATES

BUCKET_COLOURS = {"current": "#2e8b57", "1-30": "#e0b100", "31-60": "#e07b00", "61-90": "#d04a02",
                  "90+": "#a4262c", "written_off": "#5b1a1e", "closed": "#9aa5b1"}
LAYOUT = {"margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "legend": {"orientation": "h", "y": -0.2},
          "font": {"size": 11}, "paper_bgcolor": "#fff", "plot_bgcolor": "#fff", "autosize": True}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {**LAYOUT, "title": {"text": title, "font": {"size": 14}}, **extra}


def buckets_over_time(history: list[dict[str, Any]]) -> dict[str, Any]:
    days = [h["day"] for h in history]
    data = [{"type": "bar", "name": b, "x": days, "y": [h[f"{b}_principal_minor"] / 100 for h in history],
             "marker": {"color": BUCKET_COLOURS[b]}} for b in BUCKET_NAMES]
    return {"data": data, "layout": _layout("Principal by delinquency bucket (month ends)",
                                            barmode="stack", yaxis={"title": "principal"})}


def loans_by_state(history: list[dict[str, Any]]) -> dict[str, Any]:
    days = [h["day"] for h in history]
    data = [{"type": "scatter", "mode": "lines+markers", "name": s, "x": days,
             "y": [h[f"{s}_loans"] for h in history], "line": {"color": BUCKET_COLOURS[s]}} for s in STATES]
    return {"data": data, "layout": _layout("Loans by state (month ends)", yaxis={"title": "loans"})}


def vintage_curves(vintages: list[dict[str, Any]]) -> dict[str, Any]:
    data = [{"type": "scatter", "mode": "lines+markers", "name": f"{v['vintage']} ({v['loans']} loans)",
             "x": list(range(1, len(v["cumulative_default_rate"]) + 1)),
             "y": v["cumulative_default_rate"]} for v in vintages]
    return {"data": data, "layout": _layout("Vintages: cumulative default rate by months on book",
                                            xaxis={"title": "months on book", "dtick": 1},
                                            yaxis={"title": "defaulted", "tickformat": ".1%"})}


def roll_rate_heatmap(roll: dict[str, Any] | None) -> dict[str, Any]:
    roll = roll or {"from": list(BUCKET_NAMES), "to": list(STATES), "rates": [[0] * len(STATES)] * len(BUCKET_NAMES),
                    "counts": [[0] * len(STATES)] * len(BUCKET_NAMES)}
    text = [[f"{r:.0%} ({c})" for r, c in zip(rates, counts)] for rates, counts in zip(roll["rates"], roll["counts"])]
    data = [{"type": "heatmap", "z": roll["rates"], "x": roll["to"], "y": roll["from"], "text": text,
             "texttemplate": "%{text}", "colorscale": "Reds", "zmin": 0, "zmax": 1, "showscale": False}]
    return {"data": data, "layout": _layout("Roll rates: month end to next month end",
                                            xaxis={"title": "to", "side": "bottom"},
                                            yaxis={"title": "from", "autorange": "reversed"})}


def grades_chart(grades: list[dict[str, Any]]) -> dict[str, Any]:
    names = [g["grade"] for g in grades]
    data = [{"type": "bar", "name": "approval rate", "x": names, "y": [g["approval_rate"] for g in grades],
             "marker": {"color": "#136f4a"}},
            {"type": "bar", "name": "bad rate (ever 90+ DPD)", "x": names, "y": [g["bad_rate"] for g in grades],
             "marker": {"color": "#a4262c"}}]
    return {"data": data, "layout": _layout("Approval and bad rate by risk grade", barmode="group",
                                            yaxis={"tickformat": ".0%"})}


def score_psi_chart(drift: dict[str, Any]) -> dict[str, Any]:
    score = drift["score"]
    ref, cur = score["reference_counts"], score["current_counts"]
    edges = score["edges"]
    labels = [f"≤{edges[0]:.0f}"] + [f"{a:.0f}–{b:.0f}" for a, b in zip(edges, edges[1:])] + [f">{edges[-1]:.0f}"] \
        if edges else ["all"]
    labels = labels + ["missing"]
    rs, cs = sum(ref) or 1, sum(cur) or 1
    data = [{"type": "bar", "name": f"training ({drift['reference']['rows']:,})", "x": labels,
             "y": [r / rs for r in ref], "marker": {"color": "#9aa5b1"}},
            {"type": "bar", "name": f"now ({drift['current']['rows']:,})", "x": labels,
             "y": [c / cs for c in cur], "marker": {"color": "#136f4a"}}]
    return {"data": data, "layout": _layout(f"Score on the training sample's deciles · PSI {score['psi']:.3f} "
                                            f"({score['status']})", barmode="group",
                                            xaxis={"title": "score points"}, yaxis={"tickformat": ".0%"})}


def feature_psi_chart(drift: dict[str, Any], top: int = 15) -> dict[str, Any]:
    rows = drift["features"][:top][::-1]
    colours = ["#a4262c" if r["status"] == "shifted" else "#e0b100" if r["status"] == "watch" else "#2e8b57"
               for r in rows]
    data = [{"type": "bar", "orientation": "h", "x": [r["psi"] for r in rows], "y": [r["feature"] for r in rows],
             "marker": {"color": colours}}]
    return {"data": data, "layout": _layout(f"Feature PSI, top {len(rows)}", margin={"l": 210, "r": 10, "t": 40, "b": 40},
                                            xaxis={"title": "PSI"}, height=420)}
