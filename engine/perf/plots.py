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
