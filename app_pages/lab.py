"""Likelihood lab: does a flow know what it has not seen, and are its most likely images typical ones?"""
import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import lab_plots
from flow import lab
from flow.classes import SURE
from flow.data import load_mnist
from flow.viz import image_grid
from ui.classes import verdict
from ui.digits import digit_input
from ui.noise import noise_seed_input
from ui.sidebar import current_model
from ui.url_state import BIND

VIEWS = ("Digits against other inputs", "Samples by temperature")

st.title(":material/science: Likelihood lab")
chosen = current_model("mnist")
if chosen is None:
    st.stop()
model, entry = chosen
ident = (str(entry.path), entry.version)


@st.cache_data(max_entries=64, show_spinner=False)
def made(kind: str, n: int, seed: int) -> torch.Tensor:
    """The n inputs of one kind (uint8), from the first n test digits."""
    return lab.inputs(kind, load_mnist("test")[0][:n].unsqueeze(1), seed)


@st.cache_data(max_entries=64, show_spinner=False)
def scored(path: str, version: float, kind: str, n: int, seed: int, _model) -> np.ndarray:
    """One model file version's bits/dim of one kind's inputs: computed once, for every session."""
    return lab.bits(_model, made(kind, n, seed), seed)


@st.cache_data(max_entries=64, show_spinner=False)
def answered(path: str, version: float, kind: str, n: int, seed: int, _model) -> tuple[np.ndarray, np.ndarray]:
    """A conditional model's answers and top p(y | x) for one kind's inputs (`flow.lab.answers`), once for every
    session."""
    return lab.answers(_model, made(kind, n, seed), seed)


@st.cache_data(max_entries=16, show_spinner="Sampling at every temperature …")
def swept(path: str, version: float, n: int, seed: int, y: int | None,
          _model) -> dict[float, tuple[torch.Tensor, np.ndarray]]:
    return lab.by_temperature(_model, n, seed, y=y)


view = st.segmented_control("View", VIEWS, default=VIEWS[0], key="lab_view", bind=BIND, label_visibility="collapsed")
n_box, seed_box = st.columns([1, 1], vertical_alignment="bottom")
n = n_box.select_slider("Test digits", [100, 200, 500, 1000], value=200, key="lab_n", bind=BIND,
                        help="How many test digits; each other kind of input is made from the same ones")
seed = noise_seed_input("lab_noise_seed", seed_box)
results = {}
progress = st.progress(0.0, text="Scoring the inputs …")
for k, kind in enumerate(lab.KINDS):
    results[kind] = scored(*ident, kind, n, seed, model)
    progress.progress((k + 1) / len(lab.KINDS), text=f"Scoring the inputs: {kind}")
progress.empty()
test = results["test digits"]

if view == VIEWS[0]:
    st.markdown("A flow gives every input an exact likelihood. Is a low bits/dim a sign that an input looks like the "
                "training data? Here are test digits beside inputs the model never saw, all scored by the same "
                "`Flow.bits_per_dim` (one noise draw, seed above). Flows are known to give some inputs that are not "
                "their data a *higher* likelihood than their own test set (Nalisnick et al., *Do Deep Generative "
                "Models Know What They Don't Know?*, 2019): look for rows whose bulk sits left of the dotted line.")
    with st.expander("Score your own input: draw a letter, or upload a picture", expanded=False):
        mine = digit_input("lab", "Your input")
        if mine is not None and model.num_classes:  # and which class the flow would call it
            verdict(model, mine, seed, "lab", "input")
    yours = None if mine is None else float(lab.bits(model, mine, seed)[0])
    if st.session_state.get("lab_source", "Test digit") == "Test digit":  # not the user's own: say which it is
        picked = (st.session_state.get("lab_class", "any"), st.session_state.get("lab_index", 0))
        what = f"test digit #{picked[1]}" + ("" if picked[0] == "any" else f" of class {picked[0]}") + (
            " (the default: draw or upload your own in the box above)" if picked == ("any", 0) else "")
    else:
        what = "your " + ("drawing" if st.session_state["lab_source"] == "Draw" else "upload")
    rows = {kind: lab.summary(results[kind], test) for kind in lab.KINDS}
    titles = {kind: f"<b>{kind}</b> · median {rows[kind]['median']:.2f}"
              + ("" if kind == "test digits" else f" · {rows[kind]['share_below_test_median']:.0%} beat the median "
                                                  "test digit") for kind in lab.KINDS}
    pics, chart = st.columns([1, 3])
    with pics:
        examples = torch.cat([made(kind, n, seed)[:6] for kind in lab.KINDS]).float() / 255
        st.image(image_grid(examples, nrow=6, scale=2), width="stretch",
                 caption="six of each kind, in the chart's order: " + ", ".join(lab.KINDS))
    chart.plotly_chart(lab_plots.kinds_figure(results, titles, yours), key="lab_kinds")
    if yours is not None:
        st.markdown(f":orange[**The orange line, {what}: {yours:.3f} bits/dim**], better than "
                    f"{(yours < test).mean():.0%} of the {n} test digits.")
    given = {kind: answered(*ident, kind, n, seed, model) for kind in lab.KINDS} if model.num_classes else {}
    surely = {kind: {"sure of a class": float((p >= SURE).mean())} for kind, (_, p) in given.items()}
    st.dataframe(pd.DataFrame([{"input": kind, "what it is": lab.KINDS[kind][0], "median bits/dim": r["median"],
                                "5 %": r["p5"], "95 %": r["p95"], "beat the median test digit": r["share_below_test_median"],
                                **surely.get(kind, {})}
                               for kind, r in rows.items()]),
                 hide_index=True, column_config={  # narrow bars: seven columns fit a 1280-pixel projector
                     **{c: st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1, width="small")
                        for c in ("beat the median test digit", "sure of a class")},
                     **{c: st.column_config.NumberColumn(format="%.2f") for c in ("median bits/dim", "5 %", "95 %")}})
    if given:
        off = {kind: share["sure of a class"] for kind, share in surely.items() if kind != "test digits"}
        surest = max(off, key=off.get)
        right = float((given["test digits"][0] == load_mnist("test")[1][:n].numpy()).mean())
        st.markdown(f"**As a classifier** (this model is class-conditional): it names {right:.0%} of these {n} test "
                    f"digits right, and is sure of its answer, p(y | x) ≥ {SURE:.0%}, for "
                    f"{surely['test digits']['sure of a class']:.0%} of them; it is sure of a class for "
                    f"{off[surest]:.0%} of the {surest}. p(y | x) compares the classes with one another, never with "
                    "'none of them': an input far from every class can still lie much nearer one of them, and the "
                    "flow is then sure of a class for an input that is no digit at all. Its bits/dim, the column "
                    "on the left, are what says the input is unlike the data.")
    st.caption(f"The model card's {entry.test_bpd:.3f} is the mean over all 10,000 test digits; the median of these "
               f"{n} is {np.median(test):.3f}." if entry.test_bpd is not None else "")
else:
    amount, which = st.columns([2, 1])
    samples = amount.select_slider("Samples per temperature", [8, 16, 32, 64], value=16, key="lab_samples", bind=BIND)
    wanted = None
    if model.num_classes:  # draw me a 3, at every temperature
        wanted = which.selectbox("Class", ["any", *range(model.num_classes)], key="lab_class_samples", bind=BIND,
                                 help="A class-conditional model samples the class you ask for; 'any': each "
                                      "sample's class drawn at random, as the mixture of the classes samples")
        wanted = None if wanted == "any" else int(wanted)
    sweep = swept(*ident, samples, seed, wanted, model)
    st.markdown(r"Samples $x = f^{-1}(z)$ with $z \sim \mathcal N(0, T^2 I)$, every temperature from the same "
                r"directions, scored as 8-bit pictures like the test digits. As $T \to 0$ the samples move to the "
                r"mode, the single most likely point, and their bits/dim fall below most test digits', yet they look "
                r"less and less like real handwriting: real digits live in the *typical set*, a thin shell at "
                r"$|z| \approx \sqrt{D}$, not at the peak. At $T = 1$ the samples are as varied as the model "
                r"believes the data to be.")
    st.plotly_chart(lab_plots.temperature_figure({t: b for t, (_, b) in sweep.items()}, test), key="lab_temperature")
    mode = float(sweep[0.0][1][0])
    which = ("the picture" if not model.num_classes else f"class {wanted}'s mode" if wanted is not None else
             "the first sample, its class's mode (each sample here is of a class drawn at random)")
    st.markdown(f"At $T = 0$ (the mode) {which} scores **{mode:.3f} bits/dim**, better than "
                f"{(mode < test).mean():.0%} of the {n} test digits.")
    rows = st.columns(len(sweep))
    for col, (t, (frames, b)) in zip(rows, sweep.items()):
        col.image(image_grid(frames[:8], nrow=2, scale=2), caption=f"T = {t:g}: median {np.median(b):.2f}",
                  width="stretch")
