"""The guided lesson's views: for each step of `app.lesson.STEPS`, the live view it talks about and a link that
opens that view in its full page, in the same state. Each view returns the step's `Facts` (the numbers its
question is judged with), or None where the catalog has no model it can run on (it then says so)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

from app import explore_plots, latent_plots, lesson
from app.catalog import ModelEntry, list_models
from app.lesson import Facts
from flow import explore
from flow.checkpoint import CheckpointError, load_checkpoint
from flow.model import Flow
from flow.viz import image_grid
from ui.sidebar import KEY as MODEL_KEY

PLAIN = {"displayModeBar": False}
EXPLORER, LATENT, LAB = "app_pages/explorer.py", "app_pages/latent.py", "app_pages/lab.py"
NOISE_SEEDS = 6  # noise draws of the dequantization step
OPEN = "lesson_open"  # session state: the page and URL parameters a link button asked for


@st.cache_resource(max_entries=4, show_spinner="Loading model …")
def _load(path: str, version: float) -> Flow:
    """One copy per checkpoint file version, shared by every session."""
    return load_checkpoint(path)


def lesson_model(images: bool) -> tuple[Flow, ModelEntry] | None:
    """The model a step runs on (`lesson.pick_model`: the sidebar's for an MNIST step), loaded, with a caption that
    names it; None with a message where there is none."""
    chosen = st.session_state.get(MODEL_KEY)
    entry = lesson.pick_model(list_models(), images, chosen)
    kind = "an MNIST" if images else "a 2-D"
    if entry is None:
        st.warning(f"This step needs {kind} model and the model list has none: train one on the Train page.")
        return None
    if not images:
        st.caption(f"This step runs on the 2-D model **{entry.name}**" +
                   (", whatever the sidebar holds." if entry.name == lesson.TOY else
                    f" (the shipped {lesson.TOY} is not in the model list), whatever the sidebar holds."))
    elif str(entry.path) == chosen:
        st.caption(f"This step runs on **{entry.name}**, the sidebar's model: its pictures and numbers are that "
                   "model's.")
    else:
        st.caption(f"The sidebar's model is not an MNIST model: this step runs on **{entry.name}**, the first MNIST "
                   "model in the model list.")
    try:
        return _load(str(entry.path), entry.version), entry
    except CheckpointError as e:
        st.error(f"{e}. This step cannot be shown.")
        return None


def link(page: str, label: str, entry: ModelEntry, **params: str) -> None:
    """A link to `page` opened on this step's model and view (the page's URL parameters). The sidebar's model is
    taken from the URL only when a session starts, so where the step's model is not the sidebar's, a button
    switches the sidebar to it first and then opens the page (`follow_link`)."""
    query = {"model": entry.name, **params}
    if st.session_state.get(MODEL_KEY) == str(entry.path):
        st.page_link(page, label=label, icon=":material/open_in_new:", query_params=query)
    else:
        st.button(label, icon=":material/open_in_new:", type="tertiary", key=f"open_{label}",
                  on_click=st.session_state.update, args=({MODEL_KEY: str(entry.path), OPEN: (page, query)},))


def follow_link() -> None:
    """Open the page a link button asked for (its callback has already switched the sidebar's model)."""
    if (target := st.session_state.pop(OPEN, None)) is not None:
        st.switch_page(target[0], query_params=target[1])


def explorer_link(entry: ModelEntry, label: str, block: int | None = None, **params: str) -> None:
    """The Layer Explorer on the lesson's first digit (a 3), opened at `block`."""
    extra = {"block": str(block)} if block is not None else {}
    link(EXPLORER, label, entry, explorer_class=lesson.DIGITS[0], explorer_index="0", **extra, **params)


# ----- cached computations: one per model file version, shared by every session ----------------------------
@st.cache_resource(max_entries=8, show_spinner="Tracing the digit through the flow …")
def traced(path: str, version: float, label: str, seed: int | None, _model: Flow) -> explore.Steps:
    return explore.explore(_model, lesson.test_digit(label)[0], seed)


@st.cache_resource(max_entries=2, show_spinner="Carrying the points through the flow …")
def plane(path: str, version: float, data: str, _model: Flow) -> tuple[go.Figure, go.Figure, Facts]:
    """The points animation (data and a grid, block by block), the density figure, and step 1's facts."""
    points = explore.plane_data(data)
    square = explore.plane_extent(points)  # as the Layer Explorer draws it
    grid, per_line = explore.grid_lines(0.75 * square)
    steps, lines = explore.explore(_model, points), explore.explore(_model, grid)
    ticks, dens = explore.density(_model, square)
    colour = np.arctan2(points[:, 1].numpy(), points[:, 0].numpy())  # follow each point by where it started
    titles = [f"{i}. {name}" for i, name in enumerate(steps.names)]
    # the data and the Gaussian fill the frame: a middle block may spread the points wider, off it for a moment
    extent = float(np.ceil(np.percentile(np.abs(steps.states[[0, -1]]), 99.5) + 0.5))
    animation = explore_plots.points_animation(steps.states, colour, lines.states, per_line, extent, titles)
    return (animation, explore_plots.density_figure(ticks, dens, points.numpy()),
            lesson.change_of_variables_facts(_model, points, dens))


@st.cache_resource(max_entries=4, show_spinner="Building the Jacobian with autograd …")
def jacobian(path: str, version: float, i: int, _model: Flow, _steps: explore.Steps) -> tuple[np.ndarray, int]:
    return lesson.coupling_jacobian(_model, _steps, i)


@st.cache_data(max_entries=4, show_spinner="Scoring the digit with several noise draws …")
def noisy_bits(path: str, version: float, _model: Flow) -> np.ndarray:
    digit = lesson.test_digit(lesson.DIGITS[0])[0]
    return np.array([_model.bits_per_dim(digit, seed).item() for seed in range(NOISE_SEEDS)])


@st.cache_resource(max_entries=2, show_spinner="Sampling at every temperature …")
def sweep(path: str, version: float, _model: Flow) -> dict[float, tuple[torch.Tensor, np.ndarray]]:
    return lesson.temperature_sweep(_model)


@st.cache_resource(max_entries=2, show_spinner="Walking from the 3 to the 8 …")
def walk(path: str, version: float, _model: Flow) -> tuple[torch.Tensor, torch.Tensor, Facts]:
    return lesson.interpolation_frames(_model, torch.cat([lesson.test_digit(d)[0] for d in lesson.DIGITS]))


def digit_trace(seed: int | None = lesson.SEED) -> tuple[Flow, ModelEntry, explore.Steps] | None:
    """The lesson's model and its trace of the 3 (with the noise of `seed`, or at the bin centres)."""
    picked = lesson_model(images=True)
    if picked is None:
        return None
    model, entry = picked
    return model, entry, traced(str(entry.path), entry.version, lesson.DIGITS[0], seed, model)


# ----- the views --------------------------------------------------------------------------------------------
def change_of_variables() -> Facts | None:
    picked = lesson_model(images=False)
    if picked is None:
        return None
    model, entry = picked
    animation, density, facts = plane(str(entry.path), entry.version, entry.data, model)
    st.plotly_chart(animation, key="lesson_plane", config=PLAIN)
    st.plotly_chart(density, key="lesson_density", config=PLAIN)
    link(EXPLORER, f"Open {entry.name} in the Layer Explorer", entry)
    return facts


def jacobian_figure(jac: np.ndarray, kept: int) -> go.Figure:
    """log10 |J| as a grey picture, black where an entry is exactly 0, with the four blocks outlined."""
    magnitude = np.abs(jac)
    shade = np.where(magnitude > 0, np.clip((np.log10(magnitude + 1e-30) + 6) / 7, 0.05, 1), 0)  # 1e-6 .. 10
    fig = px.imshow((shade * 255).astype(np.uint8), binary_string=True)
    fig.update_traces(hoverinfo="skip", hovertemplate=None)
    edge = kept - 0.5
    for x0, x1, y0, y1 in ((edge, edge, -0.5, len(jac) - 0.5), (-0.5, len(jac) - 0.5, edge, edge)):
        fig.add_shape(type="line", x0=x0, x1=x1, y0=y0, y1=y1, line={"color": "#f58518", "width": 2})
    for x, y, text in ((0.25, 0.25, "∂y<sub>a</sub>/∂x<sub>a</sub>"), (0.75, 0.25, "∂y<sub>a</sub>/∂x<sub>b</sub>"),
                       (0.25, 0.75, "∂y<sub>b</sub>/∂x<sub>a</sub>"), (0.75, 0.75, "∂y<sub>b</sub>/∂x<sub>b</sub>")):
        fig.add_annotation(x=x * len(jac), y=y * len(jac), text=text, showarrow=False, bgcolor="white",
                           font={"size": 16})
    fig.update_layout(height=420, margin={"l": 0, "r": 0, "t": 0, "b": 0})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def coupling() -> Facts | None:
    traced_digit = digit_trace()
    if traced_digit is None:
        return None
    model, entry, steps = traced_digit
    i = lesson.first(steps, "coupling")
    jac, kept = jacobian(str(entry.path), entry.version, i, model, steps)
    st.plotly_chart(jacobian_figure(jac, kept), key="lesson_jacobian", config=PLAIN)
    st.caption(f"{steps.names[i]} of {entry.name}, at the test digit {lesson.DIGITS[0]}: rows are the outputs y, "
               f"columns the inputs x, the {kept} kept dimensions x_a first.")
    explorer_link(entry, f"Open {steps.names[i]} in the Layer Explorer", i)
    return lesson.jacobian_facts(steps, i, jac, kept)


def log_det() -> Facts | None:
    traced_digit = digit_trace()
    if traced_digit is None:
        return None
    model, entry, steps = traced_digit
    dec = explore.decomposition(model, steps)
    i = lesson.first(steps, "coupling")
    st.plotly_chart(explore_plots.decomposition_figure(dec, "nats", i - 1), key="lesson_decomposition",
                    config=PLAIN)
    st.caption(f"log p(u) = {dec.log_prob:.1f} nats, or {dec.bits_per_dim:.3f} bits/dim (noise seed "
               f"{lesson.SEED}). Outlined: {steps.names[i]}, whose term is Σ s = {steps.logdets[i]:+.1f} nats.")
    explorer_link(entry, "Step through the blocks in the Layer Explorer", i, units="nats")
    return lesson.gaussian_facts(model, steps)


def two_blocks(words: tuple[str, str], figure: Callable[[explore.Steps, int], go.Figure]
               ) -> tuple[explore.Steps, int, int] | None:
    """The trace of the lesson's digit and its first entries named by `words`, each drawn by `figure` with its
    shape and a link to it in the Layer Explorer; None, with a note, where the model has no such block."""
    traced_digit = digit_trace()
    if traced_digit is None:
        return None
    _, entry, steps = traced_digit
    found = [lesson.first(steps, word) for word in words]
    if None in found:
        st.info(f"**{entry.name}** has no {words[0]} and no {words[1]} block: it is a single-scale flow on the flat "
                "image. The multi-scale realnvp preset has both: add a realnvp model to see this step.")
        return None
    for i, word in zip(found, words):
        st.markdown(f"**{steps.names[i]}**: {'×'.join(map(str, steps.parts[i][-1].shape))} flow on after it")
        st.plotly_chart(figure(steps, i), key=f"lesson_{word.replace('-', '_')}", config=PLAIN)
        explorer_link(entry, f"Open {steps.names[i]} in the Layer Explorer", i)
    return steps, *found


def masks() -> Facts | None:
    found = two_blocks(("checkerboard", "channel"), explore_plots.block_figure)
    return None if found is None else lesson.mask_facts(*found)


def squeeze() -> Facts | None:
    found = two_blocks(("squeeze", "factor-out"), explore_plots.layout_figure)
    return None if found is None else lesson.factor_out_facts(found[0], found[2])


def bits_figure(bits: np.ndarray, test_bpd: float | None) -> go.Figure:
    """The digit's bits/dim for each noise seed, beside the model's test-set average."""
    fig = go.Figure(go.Scatter(x=[f"seed {k}" for k in range(len(bits))], y=bits, mode="markers",
                               marker={"size": 14, "color": "#4c78a8"}, name="this digit",
                               hovertemplate="%{x}: %{y:.3f} bits/dim<extra></extra>"))
    if test_bpd is not None:
        fig.add_hline(test_bpd, line_dash="dot", annotation_text=f"test-set average {test_bpd:.3f}",
                      annotation_position="bottom right")
    fig.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0}, yaxis={"title": {"text": "bits/dim"}})
    return fig


def dequantization() -> Facts | None:
    traced_digit = digit_trace(seed=None)
    if traced_digit is None:
        return None
    model, entry, centres = traced_digit
    bits = noisy_bits(str(entry.path), entry.version, model)
    st.plotly_chart(bits_figure(bits, entry.test_bpd), key="lesson_bits", config=PLAIN)
    st.caption(f"The test digit {lesson.DIGITS[0]}, `Flow.bits_per_dim` with noise seeds 0 to {len(bits) - 1}: "
               "each draw of n is another point in the digit's bins.")
    explorer_link(entry, "Trace it at the bin centres in the Layer Explorer", trace_mode=lesson.CENTRES)
    return lesson.dequantization_facts(model, bits, centres)


def temperature() -> Facts | None:
    picked = lesson_model(images=True)
    if picked is None:
        return None
    model, entry = picked
    samples = sweep(str(entry.path), entry.version, model)
    for column, (t, (frames, _)) in zip(st.columns(len(samples)), samples.items()):
        column.image(image_grid(frames, nrow=2, scale=3), caption=f"T = {t:g}", width="stretch")
    link(LAB, "Samples at every temperature in the Likelihood lab", entry, lab_view="Samples by temperature")
    return lesson.temperature_facts(samples)


def interpolation() -> Facts | None:
    picked = lesson_model(images=True)
    if picked is None:
        return None
    model, entry = picked
    frames, bits, line = walk(str(entry.path), entry.version, model)
    t = np.linspace(0, 1, len(frames))
    st.plotly_chart(latent_plots.grid_figure(frames, len(frames), [f"t = {x:.2f}" for x in t], width=700),
                    key="lesson_interpolation", config=PLAIN)
    link(LATENT, "Walk between any two digits in the Latent Playground", entry, tab="Interpolate",
         from_class=lesson.DIGITS[0], to_class=lesson.DIGITS[1], frames=str(len(frames)), method="slerp")
    return lesson.interpolation_facts(bits, line)


VIEWS: dict[str, Callable[[], Facts | None]] = {
    "change-of-variables": change_of_variables, "coupling": coupling, "log-det": log_det, "masks": masks,
    "squeeze": squeeze, "dequantization": dequantization, "temperature": temperature,
    "interpolation": interpolation,
}
