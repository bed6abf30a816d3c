"""Plotly figures of training curves (negative log-likelihood against step or epoch)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from app.jobs import bpd_to_nats

UNITS = ("bits/dim", "nats")
Y_TITLE = {"bits/dim": "NLL (bits/dim)", "nats": "NLL (nats per example)"}


def nll_columns(metrics: pd.DataFrame, data: str, unit: str) -> pd.DataFrame:
    """train/test NLL in the chosen unit: bits/dim as logged, or nats = bits/dim * D * ln 2."""
    out = metrics.copy()
    if unit == "nats":
        for col in ("train_bpd", "test_bpd"):
            out[col] = bpd_to_nats(out[col], data)
    return out


def nll_figure(runs: dict[str, tuple[pd.DataFrame, str]], unit: str = "bits/dim", x: str = "step",
               height: int = 360) -> go.Figure:
    """NLL curves of runs ({name: (metrics, data set)}): train (a point every few steps) and test (a point each
    epoch). One run: train and test in two colours; several: one colour a run, train dotted."""
    fig, single, palette = go.Figure(), len(runs) == 1, qualitative.Plotly
    for i, (name, (metrics, data)) in enumerate(runs.items()):
        m = nll_columns(metrics, data, unit)
        train, test = m[m.kind == "step"], m[m.kind == "epoch"]
        prefix = "" if single else f"{name} "
        color = palette[i % len(palette)]
        fig.add_scatter(x=train[x], y=train.train_bpd, mode="lines", name=prefix + "train", legendgroup=name,
                        line=dict(color=color, dash=None if single else "dot"), opacity=1.0 if single else 0.6)
        fig.add_scatter(x=test[x], y=test.test_bpd, mode="lines+markers", name=prefix + "test", legendgroup=name,
                        line=dict(color=palette[1] if single else color))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=x, yaxis_title=Y_TITLE[unit],
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0), uirevision="keep-zoom",
                      hovermode="x unified")
    return fig
