"""Figures that play in the browser: every step is sent once as a plotly frame, and plotly.js steps and plays
through them with its own slider and buttons, so that scrubbing and playing never ask the server."""
from __future__ import annotations

import plotly.graph_objects as go

SPEEDS = (("▶ slow", 2000), ("▶ play", 800), ("▶▶ fast", 250))  # label, milliseconds per step
CONTROLS = 145  # px below a figure for its slider and, under it, the buttons


def _jump(ms: int) -> dict:
    return {"frame": {"duration": ms, "redraw": True}, "transition": {"duration": 0}, "mode": "immediate",
            "fromcurrent": True}


def animate(fig: go.Figure, frames: list[dict], start: int, prefix: str, labels: list[str] | None = None) -> go.Figure:
    """`fig` with `frames` (one per step, named "0", "1", ...), a slider over them opening on step `start`
    (its marks: `labels`, or the step numbers; the current one shown after `prefix`), a rewind button, play at
    the three `SPEEDS` and pause, all added below the figure (`fig` needs a height and a bottom margin).
    The frames are plain dicts, not validated again: that would take a second for a 25-block flow."""
    buttons = [{"label": "⏮", "method": "animate", "args": [["0"], _jump(0)]}]
    buttons += [{"label": label, "method": "animate", "args": [None, _jump(ms)]} for label, ms in SPEEDS]
    buttons.append({"label": "❚❚ pause", "method": "animate", "args": [[None], _jump(0)]})
    height, margin = fig.layout.height + CONTROLS, fig.layout.margin.b + CONTROLS
    plot = height - margin - fig.layout.margin.t  # px, the plotting area's height: paper y = 1
    marks = labels or [str(k) for k in range(len(frames))]
    side = 3 * max(map(len, marks))  # px: half the longest mark (10 px font), which is centred on its end of the rail
    fig.update_layout(
        height=height, margin={"b": margin},
        sliders=[{"active": start, "x": 0, "len": 1, "y": -30 / plot, "yanchor": "top",  # below the axis' ticks
                  "pad": {"t": 0, "b": 0, "l": side, "r": side},
                  "currentvalue": {"prefix": prefix, "font": {"size": 13}}, "font": {"size": 10}, "ticklen": 3,
                  "steps": [{"label": label, "method": "animate", "args": [[str(k)], _jump(0)]}
                            for k, label in enumerate(marks)]}],
        updatemenus=[{"type": "buttons", "direction": "right", "showactive": False, "buttons": buttons,
                      "x": 0, "y": -(margin - 4) / plot, "xanchor": "left", "yanchor": "bottom", "pad": {"b": 0},
                      "font": {"size": 13}}])
    return go.Figure({**fig.to_dict(), "frames": frames}, _validate=False)
