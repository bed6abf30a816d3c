"""Figures that play in the browser: every step is sent once as a plotly frame, and plotly.js steps and plays
through them with its own slider and buttons, so that scrubbing and playing never ask the server."""
from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go

SPEEDS = (("▶ slow", 2000), ("▶ play", 800), ("▶▶ fast", 250))  # label, milliseconds per step
CONTROLS = 145  # px below a figure for its slider and, under it, the buttons


def array(values) -> np.ndarray:
    """A trace's x, y, z or base as a numpy array: as given, or decoded from the typed-array dict
    ({"dtype", "bdata", "shape"}) that plotly >= 6 writes numpy arrays as in `Figure.to_dict`."""
    if isinstance(values, dict) and "bdata" in values:
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        shape = values.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(values, dtype=object)


def _numbers(values) -> np.ndarray:
    """The finite numbers in a trace's x or y (None, NaN and category names dropped)."""
    if values is None:
        return np.empty(0)
    a = array(values).ravel()
    return np.array([v for v in a if isinstance(v, (int, float, np.number)) and np.isfinite(v)], dtype=float)


def extents(trace: dict) -> tuple[list, list]:
    """What a trace puts on its x- and y-axes: for each, a list of numbers, or of category names (strings).
    A heat map without x or y covers cells -0.5 to columns-0.5 and -0.5 to rows-0.5, whatever its values (all
    NaN too); a bar covers its base to base + y."""
    kind = trace.get("type", "scatter")
    if kind == "heatmap":
        rows, cols = array(trace["z"]).shape[:2]
        xs = _numbers(trace.get("x")) if trace.get("x") is not None else np.array([-0.5, cols - 0.5])
        ys = _numbers(trace.get("y")) if trace.get("y") is not None else np.array([-0.5, rows - 0.5])
        return xs.tolist(), ys.tolist()
    x, y = trace.get("x"), trace.get("y")
    if kind == "bar":
        heights = np.array([np.nan if v is None else v for v in array(y if y is not None else []).ravel()], float)
        cats = [v for v in array(x if x is not None else []).ravel() if isinstance(v, str)]
        xs = cats or (_numbers(x).tolist() if x is not None else [-0.5, len(heights) - 0.5])
        base = np.broadcast_to(array(trace["base"] if trace.get("base") is not None else 0.0).astype(float),
                               heights.shape)
        ys = np.concatenate([base, base + heights])
        return xs, ys[np.isfinite(ys)].tolist()
    cats = [v for v in array(x if x is not None else []).ravel() if isinstance(v, str)]
    return cats or _numbers(x).tolist(), _numbers(y).tolist()


def fix_axes(layout: dict, data: list[dict], frames: list[dict]) -> None:
    """Give every x- and y-axis of `layout` (a figure's, as a dict) a fixed range that holds what the traces put
    on it in every frame, with autorange off: plotly.js fits an axis to the first frame it draws and keeps that
    range, so a panel that opens empty (all NaN) or small drew the later frames cut or as a few huge cells.
    Heat maps fit their cells exactly; bars and scatter points get a 4 % margin and bars keep 0 in view; an
    axis with a range of its own keeps it; matched axes share one range; reversed axes stay reversed. Axes that
    show a picture (an `image` trace: its size is in pixels, not in x and y values) keep plotly's own fit."""
    seen: dict[str, list] = {}
    where = [(t.get("xaxis", "x"), t.get("yaxis", "y")) for t in data]
    padded, pictures = set(), set()
    for frame in [{"data": data}, *frames]:
        for k, trace in zip(frame.get("traces", range(len(data))), frame["data"]):
            merged = {**data[k], **trace}  # a frame's trace updates the figure's
            kind = merged.get("type", "scatter")
            xs, ys = extents(merged)
            for axis, values in zip(where[k], (xs, ys)):
                name = axis[0] + "axis" + axis[1:]
                if kind == "image":
                    pictures.add(name)
                seen.setdefault(name, []).extend(values)
                if kind != "heatmap":
                    padded.add(name)
                if (kind == "bar" and axis[0] == "y") or layout.get(name, {}).get("rangemode") == "tozero":
                    seen[name].append(0.0)
    for shape in layout.get("shapes", []):  # e.g. add_hline's noise level on the KS panel
        for side in ("x", "y"):
            ref = shape.get(f"{side}ref", side)
            if ref and not ref.endswith("domain") and ref != "paper":
                seen.setdefault(ref[0] + "axis" + ref[1:], []).extend(
                    v for v in (shape.get(f"{side}0"), shape.get(f"{side}1")) if isinstance(v, (int, float)))
    ranges: dict[str, list[float]] = {}
    for name, values in seen.items():
        if name in pictures:
            continue
        axis = layout.setdefault(name, {})
        if axis.get("range") is not None:
            ranges[name] = list(axis["range"])
            continue
        strings = [v for v in values if isinstance(v, str)]
        if strings or axis.get("type") == "category":
            lo, hi = -0.5, len(dict.fromkeys(strings)) - 0.5
        else:
            numbers = [v for v in values if not isinstance(v, str)] or [0.0, 1.0]
            lo, hi = min(numbers), max(numbers)
            pad = 0.04 * (hi - lo or 1.0) if name in padded else 0.0
            lo, hi = lo - pad, hi + pad
        ranges[name] = [lo, hi]
    for name, axis in ((n, layout[n]) for n in list(ranges)):
        match = axis.get("matches")
        if match:
            other = match[0] + "axis" + match[1:]
            both = ranges[name] + ranges.get(other, ranges[name])
            ranges[name] = ranges[other] = [min(both), max(both)]
    for name, (lo, hi) in ranges.items():
        axis = layout[name]
        if axis.get("autorange") == "reversed":
            lo, hi = max(lo, hi), min(lo, hi)
        axis.update(range=[lo, hi], autorange=False)


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
    side = 4 * max(map(len, marks))  # px: half the longest mark (12 px font), which is centred on its end of the rail
    fig.update_layout(
        height=height, margin={"b": margin},
        sliders=[{"active": start, "x": 0, "len": 1, "y": -30 / plot, "yanchor": "top",  # below the axis' ticks
                  "pad": {"t": 0, "b": 0, "l": side, "r": side},
                  "currentvalue": {"prefix": prefix, "font": {"size": 13}}, "font": {"size": 12}, "ticklen": 3,
                  "steps": [{"label": label, "method": "animate", "args": [[str(k)], _jump(0)]}
                            for k, label in enumerate(marks)]}],
        updatemenus=[{"type": "buttons", "direction": "right", "showactive": False, "buttons": buttons,
                      "x": 0, "y": -(margin - 4) / plot, "xanchor": "left", "yanchor": "bottom", "pad": {"b": 0},
                      "font": {"size": 13}}])
    whole = fig.to_dict()
    fix_axes(whole["layout"], whole["data"], frames)
    return go.Figure({**whole, "frames": frames}, _validate=False)
