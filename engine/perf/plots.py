"""Plotly figures for the GPU Selector (pure functions: frames in, figures out)."""

import math

import plotly.graph_objects as go

SYMBOL = {"published": "diamond", "measured": "star"}


def throughput_curves_figure(curves: dict, points=None, title: str = "Throughput per GPU vs batch (estimated)"):
    """One line per option with its uncertainty band; published/measured points drawn on top."""
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    colors = {label: palette[i % len(palette)] for i, label in enumerate(curves)}  # one colour per series
    for label, df in curves.items():
        color = colors[label]
        fig.add_trace(go.Scatter(x=list(df.batch) + list(df.batch[::-1]),
                                 y=list(df.high_per_gpu) + list(df.low_per_gpu[::-1]), fill="toself",
                                 fillcolor=color, opacity=0.12, line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=label))
        fig.add_trace(go.Scatter(
            x=df.batch, y=df.output_tokens_per_sec_per_gpu, mode="lines+markers", name=label,
            line={"color": color}, legendgroup=label,
            customdata=list(zip(df.ttft_ms, df.tpot_ms, df.calibrated_from)),
            hovertemplate=(f"<b>{label}</b><br>batch %{{x}}<br>%{{y:,.0f}} tok/s per GPU (estimated)"
                           "<br>TTFT %{customdata[0]:,.0f} ms · TPOT %{customdata[1]:.1f} ms"
                           "<br>%{customdata[2]}<extra></extra>")))
    if points is not None and len(points):
        for (label, prov), g in points.groupby(["option", "provenance"]):
            fig.add_trace(go.Scatter(
                x=g.batch, y=g.output_tokens_per_sec_per_gpu, mode="markers", name=f"{label} ({prov})",
                marker={"symbol": SYMBOL.get(prov, "circle"), "size": 11, "color": colors.get(label, "#7f7f7f"),
                        "line": {"width": 1, "color": "black"}}, legendgroup=label,
                customdata=g.source, hovertemplate=(f"<b>{label}</b> {prov}<br>batch %{{x}}<br>"
                                                    "%{y:,.0f} tok/s per GPU<br>%{customdata}<extra></extra>")))
    # ticks at 1, 2, 4, 8, ... (the batches swept) instead of plotly's crowded log minor labels
    fig.update_layout(title=title, xaxis={"title": "Batch (concurrent requests)", "type": "log",
                                          "dtick": math.log10(2)},
                      yaxis={"title": "Output tokens/s per GPU"}, legend={"font": {"size": 10}},
                      margin={"t": 50})
    return fig


def memory_figure(rows, title: str = "Memory per GPU (estimated)"):
    """Stacked weights / KV cache / activations / reserve per option, with each GPU's capacity."""
    fig = go.Figure()
    for part, color in (("weights", "#4c78a8"), ("kv_cache", "#f58518"), ("activations", "#54a24b"),
                        ("reserve", "#b7b7b7")):
        fig.add_trace(go.Bar(x=rows.option, y=rows[part], name=part.replace("_", " "), marker_color=color,
                             hovertemplate=f"{part}: %{{y:.1f}} GiB<extra></extra>"))
    fig.add_trace(go.Scatter(x=rows.option, y=rows.capacity, mode="markers", name="GPU memory",
                             marker={"symbol": "line-ew-open", "size": 30, "color": "black"},
                             hovertemplate="capacity %{y:.1f} GiB<extra></extra>"))
    fig.update_layout(barmode="stack", title=title, yaxis={"title": "GiB per GPU"}, margin={"t": 50})
    return fig


PROTOCOL_COLOR = {"source": "#7f7f7f", "version": "#9467bd", "family": "#2ca02c", "gpu_id": "#1f77b4"}
UNITS = {"throughput": "output tokens/s (total)", "ttft": "time to first token, ms"}


def parity_figure(res, gpu_id: str | None = None, family: str | None = None, measured=None,
                  metric: str = "throughput", nominal: float | None = None, band_rel: float | None = None):
    """Estimated vs published on log axes, one colour per held-out protocol (engine/perf/holdout.py).

    Points of `gpu_id` or of model `family` are drawn larger with a black outline and their median
    |error| is in the title; `measured` (columns value, predicted, source) adds the user's own points;
    `band_rel` draws the stated band around the diagonal.
    """
    from engine.perf.holdout import PROTOCOLS, median_errors

    fig = go.Figure()
    d = res[(res.metric == metric) & res.predicted.notna()]
    for proto, g in d.groupby("protocol", sort=False):
        mine = (g.gpu_id == gpu_id) | (g.family == family)
        for hi, part in ((False, g[~mine]), (True, g[mine])):
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part.value, y=part.predicted, mode="markers", legendgroup=proto,
                name=PROTOCOLS.get(proto, proto) + (" · this GPU/family" if hi else ""),
                marker={"color": PROTOCOL_COLOR.get(proto, "#17becf"), "size": 10 if hi else 6,
                        "opacity": 0.9 if hi else 0.45,
                        "line": {"width": 1.5 if hi else 0, "color": "black"}},
                customdata=list(zip(part.gpu_id, part.model_id, part.precision, part.held_out)),
                hovertemplate=("%{customdata[1]} %{customdata[2]} on %{customdata[0]}<br>published %{x:,.4g}"
                               "<br>estimated %{y:,.4g}<br>held out: %{customdata[3]}<extra></extra>")))
    if measured is not None and len(measured):
        fig.add_trace(go.Scatter(x=measured.value, y=measured.predicted, mode="markers",
                                 name="your measured (in the fit)",
                                 marker={"symbol": "star", "size": 12, "color": "#d62728",
                                         "line": {"width": 1, "color": "black"}},
                                 customdata=measured.source, hovertemplate="%{customdata}<br>measured %{x:,.4g}"
                                 "<br>estimated %{y:,.4g}<extra></extra>"))
    lo = float(min(d.value.min(), d.predicted.min())) if len(d) else 1.0
    hi_ = float(max(d.value.max(), d.predicted.max())) if len(d) else 10.0
    diag = [lo / 1.2, hi_ * 1.2]
    fig.add_trace(go.Scatter(x=diag, y=diag, mode="lines", name="estimate = published",
                             line={"color": "black", "dash": "dash", "width": 1}, hoverinfo="skip"))
    if band_rel:
        for f, label in ((1 + band_rel, "band"), (1 / (1 + band_rel), None)):
            fig.add_trace(go.Scatter(x=diag, y=[v * f for v in diag], mode="lines", hoverinfo="skip",
                                     name=f"{nominal:.0%} band of this estimate" if label and nominal else
                                     "band of this estimate", showlegend=bool(label),
                                     line={"color": "#555", "dash": "dot", "width": 1}))
    meds = median_errors(res, gpu_id, family, metric)
    parts = [f"{k}: {v[0]:.0%} (n {v[1]})" for k, v in meds.items() if v[1]]
    fig.update_layout(title=f"How good is this estimate? Held-out median |error| — {'; '.join(parts)}",
                      xaxis={"title": f"Published {UNITS.get(metric, metric)}", "type": "log"},
                      yaxis={"title": f"Estimated {UNITS.get(metric, metric)}", "type": "log"},
                      legend={"font": {"size": 10}}, margin={"t": 60}, title_font={"size": 13})
    return fig
