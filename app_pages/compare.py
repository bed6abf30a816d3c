"""Compare models: one digit through two flows side by side, stepped together, and the same latents decoded by both."""
import numpy as np
import streamlit as st
import torch

from app import explore_plots as plots
from app.catalog import ModelEntry, list_models
from flow import explore, latent
from flow.viz import image_grid
from ui.digits import digit_input
from ui.noise import noise_seed_input
from ui.sidebar import KEY as MODEL_KEY, load
from ui.url_state import BIND, name_from_url, url_decides

PLAIN = {"displayModeBar": False}
PREFERRED = ("seed-mlp-mnist", "realnvp-mnist")  # the seed's MLP against the paper's multi-scale design

st.title(":material/compare: Compare models")
st.markdown("The same digit, with the same dequantization noise, through two flows. One slider steps both at the "
            "same fraction of their blocks, and each bar chart adds up that model's bits/dim (paper Eq. 3). Pick the "
            "seed's MLP against the paper's multi-scale convolutional flow, or any two MNIST models of the sidebar's "
            "list: the shipped checkpoints and each training run's latest checkpoint.")
listed = list_models()
entries = {e.name: e for e in listed if e.error is None and e.is_image_model}
sidebar = next((e for e in listed if str(e.path) == st.session_state.get(MODEL_KEY) and e.error is None), None)
if sidebar is not None and not sidebar.is_image_model:  # this page takes MNIST models only, not the sidebar's
    st.info(f"Compare runs one MNIST digit through two MNIST models: the sidebar's **{sidebar.name}**, trained on "
            f"{sidebar.data_name}, is not among them.")
if len(entries) < 2:
    st.info("Comparing needs two MNIST models: train another on the Train page.")
    st.stop()
names = list(entries)
left, right, seed_box = st.columns([2, 2, 1], vertical_alignment="bottom")
defaults = [n for n in PREFERRED if n in entries] + [n for n in names if n not in PREFERRED]
picked = []
for col, label, key, default in ((left, "Model A", "compare_a", defaults[0]),
                                 (right, "Model B", "compare_b", defaults[1])):
    # by hand, not bind=: a bound select box puts its label (name and bits/dim) in the URL, and a link then
    # breaks as soon as the run's score changes; the catalog name stays
    if url_decides(f"{key}_from_url"):
        st.session_state[key] = name_from_url(key, {n: n for n in names}, label) or st.session_state.get(key)
    if st.session_state.get(key) not in entries:
        st.session_state[key] = default
    picked.append(col.selectbox(label, names, key=key, format_func=lambda n: entries[n].label))
    st.query_params[key] = picked[-1]
seed = noise_seed_input("compare_noise_seed", seed_box)
digit = digit_input("compare", "Digit")
if digit is None:
    st.stop()


@st.cache_resource(max_entries=16, show_spinner="Tracing the digit …")
def traced(path: str, version: float, digit: bytes, seed: int, _entry: ModelEntry) -> tuple:
    model = load(_entry)
    pixels = torch.frombuffer(bytearray(digit), dtype=torch.uint8).view(1, 1, 28, 28)
    steps = explore.explore(model, pixels, seed)
    return steps, explore.decomposition(model, steps)


sides = []
for name in picked:
    e = entries[name]
    sides.append((name, *traced(str(e.path), e.version, digit.numpy().tobytes(), seed, e)))
with st.container(key="compare_animation"):
    st.plotly_chart(plots.compare_animation(sides), key="compare_chart", config=PLAIN)
(a, sa, da), (b, sb, db) = sides
better, worse = sorted([(da.bits_per_dim, a, sa), (db.bits_per_dim, b, sb)], key=lambda t: t[0])
st.markdown(f"**{better[1]}** describes this digit in **{better[0]:.3f} bits/dim**, **{worse[1]}** in "
            f"**{worse[0]:.3f}**: {worse[0] - better[0]:.3f} bits per pixel, {784 * (worse[0] - better[0]):.0f} bits "
            f"for the whole digit. At the end their codes are this Gaussian: KS {sa.ks[-1]:.3f} ({a}) and "
            f"{sb.ks[-1]:.3f} ({b}). A flow of affine couplings on flat pixels (an MLP) sees every pixel at once but "
            "has no notion of neighbours; the paper's convolutional s and t see local strokes, and its squeezes and "
            "factor-outs let later blocks work on coarser, deeper tensors (paper Sec. 3.6).")

st.header("The same latents, decoded by both")
models = [load(entries[name]) for name in picked]
if models[0].dim != models[1].dim:
    st.info(f"{a} and {b} have latents of different sizes: there is no shared z to decode.")
else:
    c1, c2 = st.columns(2)
    temperature = c1.slider("Temperature T", 0.0, 1.5, 0.7, 0.05, key="compare_temperature", bind=BIND)
    sample_seed = c2.number_input("Sample seed", 0, 10**6, 0, key="compare_sample_seed", bind=BIND)
    z = models[0].latents(16, temperature, sample_seed)
    for col, name, model in zip(st.columns(2), picked, models):
        # a class-conditional model samples a class, then the digit: classes drawn at random (its marginal sampler)
        classes = model.random_classes(len(z), sample_seed) if model.num_classes else None
        frames, bits = latent.decode_with_bits(model, z, seed, classes)
        col.image(image_grid(frames, nrow=4, scale=3), width="stretch",
                  caption=f"{name}: the same 16 latents z ~ N(0, T²I)"
                  + (", each read as a class drawn at random" if classes is not None else "")
                  + f"; median {np.median(bits.numpy()):.3f} bits/dim")
