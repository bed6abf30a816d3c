"""Layer Explorer: one block at a time, how the flow turns a digit into Gaussian noise and noise back into a digit."""
import hashlib
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from app import explore_plots as plots, jobs
from app.catalog import list_models
from flow import explore
from flow.data import TOY_SETS
from ui.classes import own_class
from ui.classroom import notice
from ui.digits import digit_input
from ui.noise import noise_seed_input
from ui.player import stepper
from ui.sidebar import KEY as MODEL_KEY, current_model
from ui.training import plane
from ui.url_state import BIND, url_int, whole_number

PLAIN = {"displayModeBar": False}  # no plotly toolbar over the small maps
OWN_CLASS = "its own"


def sci(x: float) -> str:
    """1.2e−07 with a minus sign a line never breaks at (a hyphen would)."""
    return f"{x:.1e}".replace("-", "−")

ABOUT = {  # markdown soft-wraps these lines; none may start with "+" or "-" (that would make a list)
    "data": r"""**The input, as in training.** The digit's 8-bit pixels $x$ plus uniform noise,

$$u = (x + n)/256,\quad n \sim U[0, 1)^{784},$$

drawn from the noise seed above. A flow is a density on continuous values: spreading each pixel over its bin
(dequantization, paper Sec. 4.1) is what lets its likelihood bound the digit's probability. Every map on this
page is drawn in this 28×28 layout: each dimension stays at the pixel it came from, however the flow reshapes
the tensor (hover a map to see where a value now sits).""",
    "centres": r"""**The input, without dequantization noise.** Each pixel at the centre of its bin,

$$u = (x + \tfrac12)/256.$$

The model was trained on $x$ plus uniform noise and never saw this exact point. Its density peaks near the bin
centres, so the code $z$ comes out much shorter than a Gaussian draw (a standard deviation of about 0.4 to 0.5,
not 1) and the last block does not look Gaussian. Its total is the density at one point of each pixel's bin,
not the digit's bits/dim. Every map is drawn in this 28×28 layout: each dimension stays at the pixel it came
from.""",
    "preprocess": r"""**Logit** (paper Sec. 4.1). It stretches $(0, 1)$ over the whole real line,
so that a Gaussian can cover it:

$$y = \operatorname{logit}(p),\quad p = \alpha + (1-2\alpha)\,u,$$

with $\alpha = 0.05$.

Its log-det is the first term of the likelihood:

$$\log|\det J| = -\textstyle\sum_j \log\frac{p_j(1-p_j)}{1-2\alpha}.$$""",
    "coupling": r"""**Affine coupling** (paper Eqs. 4, 5 and 9). The white half of the mask $b$, $x_a$, passes
unchanged and is all that the networks $s$ and $t$ see; the black half, $x_b$, is scaled and shifted:

$$y_a = x_a,$$

$$y_b = x_b \odot e^{s(x_a)} + t(x_a).$$

The Jacobian is triangular, so the log-det is the sum of
the $s$ map (Eq. 6):

$$\log|\det J| = \textstyle\sum_j \big((1-b) \odot s\big)_j.$$""",
    "actnorm": r"""**ActNorm.** Each channel $c$ is shifted and rescaled by learned numbers (first set from
data), the same for every input:

$$y = (x - \mu_c)\, e^{-\log\sigma_c},$$



$$\log|\det J| = -HW \textstyle\sum_c \log\sigma_c.$$

It stands in for the paper's batch normalisation: exact, and the same on one image as on a batch.""",
    "squeeze": r"""**Squeeze** (paper Fig. 3). Each 2×2×C patch becomes a 1×1×4C one: the tensor gets
coarser and deeper, so that convolutions see further. No value changes, so $\log|\det J| = 0$ and the
picture in the input layout stays the same. Below: the tensor as the network holds it (its channels side
by side) and the channel each input pixel now sits in.""",
    "prior": r"""**Class prior** (a class-conditional model; Glow's learned prior, Kingma & Dhariwal 2018). The flow's
output $h$ meets the Gaussian of the class $y$ it is traced as, with a learned mean $\mu_y$ and scale
$\sigma_y$ for every dimension; standardised, it should be standard normal:

$$z = (h - \mu_y)\, e^{-\log\sigma_y},\qquad \log|\det J| = -\textstyle\sum_j \log\sigma_{y,j}.$$

The same digit traced as another class ends here with another $z$ and another likelihood: comparing them is
how the flow classifies (the Latent Playground's *Which digit?* tab).""",
    "factor-out": r"""**Factor out** (paper Sec. 3.6). Half of the channels leave the flow here as $z_i$ and go
straight to the Gaussian prior; the other half goes on to the next scale. Nothing is computed, so
$\log|\det J| = 0$. Below: which pixels' dimensions leave and which flow on.""",
}

UNDO = {  # the generative direction: what undoing each kind of block does
    "data": "The latent $z$: the factored-out $z_i$ and the final $h$, each value at the pixel it will end up at.",
    "coupling": r"""The coupling run backwards (paper Eq. 8): the kept half is unchanged, so $s$ and $t$ can be
computed again from it, and the other half becomes $x = (y - t) \odot e^{-s}$. Values are still in logit space;
the digit appears as the blocks are undone.""",
    "actnorm": r"ActNorm undone: $x = y\,e^{\log\sigma_c} + \mu_c$ for each channel $c$.",
    "squeeze": "Unsqueeze: each 1×1×4C patch goes back to a 2×2×C one. No value changes.",
    "factor-out": "The factored-out $z_i$ rejoins the flow: the tensor gets those channels back.",
    "prior": r"The class prior undone: $h = z\,e^{\log\sigma_y} + \mu_y$, the latent placed in the chosen class's "
             r"Gaussian. The same $z$ with another class is another digit in the same handwriting.",
    "preprocess": r"""The logit undone, which gives the picture:

$$u = \frac{\sigma(y) - \alpha}{1 - 2\alpha} \in [0, 1].$$""",
}
BRIEF = {  # one plain line per kind under the animation's title (plotly does not typeset LaTeX)
    "data": "The digit's pixels plus uniform dequantization noise: u = (x + n)/256, n ~ U[0, 1).",
    "centres": "The digit's pixels at their bin centres, u = (x + ½)/256: a point the model never saw in training.",
    "preprocess": "Logit: y = logit(α + (1 − 2α)u) with α = 0.05 stretches (0, 1) over the whole real line.",
    "coupling": "Affine coupling: half of the values, x<sub>a</sub>, pass; the rest become "
                "x<sub>b</sub>·e<sup>s(x<sub>a</sub>)</sup> + t(x<sub>a</sub>). log-det = Σ s.",
    "actnorm": "ActNorm: each channel c shifted and rescaled by learned numbers. log-det = −HW Σ log σ<sub>c</sub>.",
    "squeeze": "Squeeze: each 2×2×C patch becomes 1×1×4C. No value changes: log-det 0, the same picture.",
    "factor-out": "Factor-out: half of the channels leave as z<sub>i</sub> for the prior. No value changes: log-det 0.",
    "prior": "Class prior: z = (h − μ<sub>y</sub>)·e<sup>−log σ<sub>y</sub></sup>, the flow's output standardised "
             "by class y's Gaussian. log-det = −Σ log σ<sub>y</sub>.",
}
TRACE_MODES = ("with dequantization noise, as trained", "without dequantization noise (bin centres)")

ABOUT_2D = {
    "data": "**The data.** Points of the training set, each coloured by its angle around the origin so that "
            "you can follow it through the blocks.",
    "coupling": r"""**Affine coupling** (paper Eq. 9) in 2-D: one coordinate (where the mask $b$ is 1) stays,
the other is scaled by $e^{s}$ and shifted by $t$, both functions of the first: the plane is sheared along
one axis. $\log|\det J| = s$ of the changed coordinate. The next coupling swaps the roles.""",
    "actnorm": r"""**ActNorm.** Each coordinate is shifted and rescaled, $y = (x - \mu)\,e^{-\log\sigma}$: the
plane is stretched along the axes. $\log|\det J| = -\sum \log\sigma$, the same for every point.""",
}

@st.cache_resource(max_entries=32, show_spinner="Tracing the flow …")
def traced(path: str, version: float, source: str, seed: int | None, _model, _x, y: int | None = None) -> explore.Steps:
    """One forward trace per (model file version, input, noise seed, class): the slider then only indexes arrays."""
    return explore.explore(_model, _x, seed, y)


@st.cache_data(max_entries=256, show_spinner="Building the Jacobian with autograd …")
def jacobian(path: str, version: float, source: str, seed: int | None, block: int, _model,
             _steps: explore.Steps, y: int | None = None) -> tuple[float, float] | None:
    return explore.jacobian_check(_model, _steps, block)


@st.cache_resource(max_entries=32, show_spinner="Running the flow backwards …")
def generated(path: str, version: float, source: str, _model, _z, y: int | None = None) -> explore.Steps:
    return explore.generate(_model, _z, y)


@st.cache_resource(max_entries=24, show_spinner="Drawing every block …")
def animated(view: tuple, _build: Callable[[], go.Figure]) -> go.Figure:
    """One animation figure per view (model file version, input, settings, opening step), shared by every
    session: building its frames is the costly part (about 0.3 s for 25 blocks); reading it is not. A figure
    holds about 12 MB of Python objects: 24 of them (a class of 20, each on a digit of their own) stay under
    300 MB."""
    return _build()


@st.cache_resource(max_entries=8, show_spinner="Evaluating the density …")
def density(path: str, version: float, extent: float, _model) -> tuple[np.ndarray, np.ndarray]:
    return explore.density(_model, extent)


def opening(n: int) -> int:
    """The step an animation opens at: the block stepper's, or on a session's first run the URL's."""
    if "block" in st.session_state:  # a step past this model's last (another model's) opens at its last
        return min(whole_number(st.session_state["block"], 0, 10**9) or 0, n - 1)
    return min(url_int("block", 0, 10**9) or 0, n - 1)


def digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


def toy_training_offer() -> None:
    """2-D models show the flow as a warping of the plane; offer a quick one (a real run) when none exists."""
    name = st.session_state.get("toy_run")  # the run this session started, once it has
    if name is None:
        if any(e.error is None and e.kind == "points" for e in list_models()):
            st.caption("To see the flow bend the plane (paper Fig. 1), pick a **toy-2d** model in the sidebar.")
            return
        st.info("There is no 2-D model yet. Train a small one here in about 20 seconds to watch a flow bend "
                "the plane.")
        if not notice("explorer", "train a model"):  # a student's browser in classroom mode: no launch button
            return
        c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
        data = c1.selectbox("Toy data set", TOY_SETS, key="toy_data")
        if c2.button("Train a 2-D model (about 20 s)", key="toy_train"):
            try:
                st.session_state["toy_run"] = jobs.launch(jobs.RunSpec(preset="toy-2d", data=data, epochs=4)).name
            except jobs.JobError as e:
                st.error(str(e))
                return
            st.rerun()
        return
    try:
        run = jobs.get_run(name)
    except jobs.JobError as e:  # deleted on the Train page meanwhile
        st.session_state.pop("toy_run")
        st.warning(str(e))
        return toy_training_offer()
    if run.state == "finished":
        st.success(f"**{name}** is trained and in the sidebar's list. Replay its training below, or explore it.")
        st.button("Explore it", key="toy_open", on_click=st.session_state.update,
                  args=({MODEL_KEY: str(run.checkpoint), "toy_run": None},))
    elif not run.active:
        st.error(f"The training run {name} ended {run.state}: {run.message}")
        st.button("Try again", key="toy_again", on_click=st.session_state.pop, args=("toy_run",))
        return
    plane(run, progress=True)  # live while it trains (the whole page reruns when it ends), then a replay


st.title(":material/biotech: Layer Explorer")
picked = current_model()
if picked is None:
    toy_training_offer()
    st.stop()
model, entry = picked
ident = (str(entry.path), entry.version)

say = entry.reword  # the text is about MNIST digits: said of this model's images where they are not
if entry.kind == "images":
    st.markdown(say("A digit turned into Gaussian noise block by block, and back: pick one, then press play."))
    with st.container(border=True):  # the digit beside how it is traced: the animation starts on the first screen
        pick, settings = st.columns([3, 2])
        with pick:
            digit = digit_input("explorer", say("Digit"), entry=entry)
        mode, seed_box = settings, settings
        with_noise = mode.radio("Trace", TRACE_MODES, key="trace_mode", bind=BIND,
                                help="The model was trained on pixels plus uniform noise: that is what it "
                                     "turns into Gaussian noise. Without the noise, at the bin centres, it "
                                     "gives a much shorter, non-Gaussian code.") == TRACE_MODES[0]
        noise_seed = noise_seed_input("explorer_noise_seed", seed_box)
    if digit is None:
        st.stop()
    seed = noise_seed if with_noise else None
    source = digest(digit.numpy())
    # the animation's head row: the title, for a conditional model the class it is traced as, and the unit
    if model.num_classes:
        head, class_box, unit_box = st.columns([2, 1, 1], vertical_alignment="bottom")
    else:
        head, unit_box = st.columns([2, 1], vertical_alignment="bottom")
    y, traced_as = None, ""
    if model.num_classes:  # a conditional model's last block is one class's prior
        own, how = own_class(model, "explorer", digit, noise_seed)
        as_class = class_box.selectbox(
            "Trace as class", [OWN_CLASS, *range(model.num_classes)], key="trace_class", bind=BIND,
            label_visibility="collapsed", format_func=lambda c: f"as class {own} ({how.split(',')[0]})"
            if c == OWN_CLASS else f"as class {c}", help="A class-conditional model's last block is the Gaussian of "
            "one class. By default the digit's own: its label, or for a drawing the flow's answer.")
        y, how = (own, how) if as_class == OWN_CLASS else (int(as_class), "chosen here")
        traced_as = f" Traced **as class {y}** ({how}): its last block is that class's prior."
    steps = traced(*ident, source, seed, model, digit, y)
    dec = explore.decomposition(model, steps)
    digit_bits = explore.decomposition(model, traced(*ident, source, noise_seed, model, digit, y)).bits_per_dim

    def bits_note() -> str:
        if not with_noise:
            return say(f"At the bin centres this is a density at one point of each pixel's bin, not the digit's "
                    f"bits/dim: with dequantization noise (seed {noise_seed}) the digit scores "
                    f"**{digit_bits:.3f} bits/dim**.")
        card = f" The model card's {entry.test_bpd:.3f} is the average over the test digits." \
            if entry.test_bpd is not None else ""
        if y is not None:
            with torch.no_grad():
                marginal = model.bits_per_dim(digit, noise_seed)[0].item()
            return say(f"This is the digit's bits/dim **as class {y}**, log p(u | y = {y}), with one noise draw (seed "
                       f"{noise_seed}) on the [0, 256) pixel scale. The number the other pages and `python -m "
                       f"flow.evaluate --seed {noise_seed}` give it is the marginal over all classes, "
                       f"**{marginal:.3f} bits/dim**.{card}")
        return say(f"This is the digit's bits/dim: uniform dequantization with one noise draw (seed {noise_seed}), on "
                f"the [0, 256) pixel scale, as the Latent Playground and `python -m flow.evaluate --seed "
                f"{noise_seed}` score it.{card} Another noise draw moves one digit's figure by up to about a tenth.")

    head.subheader(say("Digit → noise"))
    units = unit_box.segmented_control("Likelihood in", ["nats", "bits/dim"], default="bits/dim", key="units",
                                       bind=BIND, label_visibility="collapsed",  # a row lower: the animation
                                       help="The likelihood's unit in the bar chart")  # starts on the first screen
    captions = [say(BRIEF["data" if with_noise else "centres"])] + [
        f"{say(BRIEF[kind])} Inverts to {sci(err)}." for kind, err in zip(steps.kinds[1:], steps.roundtrip[1:])]
    level = explore.ks_noise_level(model.dim)
    with st.container(key="flow_animation"):  # stepping and playing happen in the browser
        view = ("flow", *ident, source, seed, y, units, opening(len(steps)))
        st.plotly_chart(animated(view, lambda: plots.flow_animation(
            steps, dec, "nats" if units == "nats" else "bpd", captions, opening(len(steps)), level)),
            key="flow_chart", config=PLAIN)
    st.markdown(say(r"Press **play** or drag the slider: every block of this digit is already in your browser. "
                    r"The bars "
                r"add up the likelihood from left to right (paper Eq. 3; :green[■] shortens the code, :red[■] lengthens "
                r"it, :orange[■] is the block on screen), "
                r"$\log p(u) = \log \mathcal N(z; 0, I) + \sum_k \log|\det \partial h_k/\partial h_{k-1}|$, "
                r"and $\text{bits/dim} = (-\log p(u) + D \log 256)/(D \log 2)$. "
                f"Total: **log p(u) = {dec.log_prob:.1f} nats, or {dec.bits_per_dim:.3f} bits/dim**.{traced_as} "
                + bits_note()
                + f" At the end the {model.dim} values should look like draws from $\\mathcal N(0, 1)$: a KS distance "
                  f"below about {level:.2f} (the dotted line) is within sampling noise."))

    def audit(i: int) -> None:
        """How exactly this block and the whole flow invert, and its log-det against autograd's."""
        if i == 0:
            st.caption(f"**Invertibility audit.** The whole flow inverts this input to within "
                       f"max |u − f⁻¹(f(u))| = {sci(steps.flow_roundtrip)} "
                       f"({sci(steps.flow_roundtrip * 256)} grey levels of 256).")
            return
        st.caption(f"**Invertibility audit.** This block: max |h − f⁻¹(f(h))| = {sci(steps.roundtrip[i])}; "
                   f"the whole flow: {sci(steps.flow_roundtrip)} in u ({sci(steps.flow_roundtrip * 256)} grey levels).")
        if steps.kinds[i] == "factor-out":
            return
        if st.toggle("Log-det against autograd", key="autograd_check",
                     help=say("Builds the block's full 784 × 784 Jacobian with torch.func.jacrev (up to a second) "
                          "and takes log|det| of it")):
            claimed, built = jacobian(*ident, source, seed, i, model, steps, y)
            st.caption(say(f"log|det J|: **{claimed:.4f}** nats from the block's own formula, **{built:.4f}** from "
                       f"autograd's 784 × 784 Jacobian (difference {sci(abs(claimed - built))})."))

    def forward_block(i: int) -> None:
        kind = steps.kinds[i]
        st.markdown(f"#### {i}. {steps.names[i]}  ·  log-det {steps.logdets[i]:+.2f} nats")
        text, maps = st.columns([2, 3])
        with text:
            st.markdown(say(ABOUT["data" if with_noise else "centres"] if kind == "data" else ABOUT[kind]))
            if kind == "coupling" and np.isnan(steps.block(i)["s"]).any():
                st.markdown("Grey: dimensions already factored out, which this block does not see.")
            audit(i)
            st.caption("Its values: " + ", ".join(f"{k} {v:+.2f}" for k, v in explore.moments(steps.states[i]).items())
                       + f", KS {steps.ks[i]:.3f}.")
        maps.plotly_chart(plots.block_figure(steps, i), key="block_maps", config=PLAIN)
        if kind in ("squeeze", "factor-out"):
            maps.plotly_chart(plots.layout_figure(steps, i), key="layout_maps", config=PLAIN)

    st.subheader("One block at a time, with its formulas")
    stepper("block", len(steps), "Block", forward_block)

    @st.fragment  # its own reruns: a new temperature or seed does not resend the digit's animation, nor it this
    def generation() -> None:
        st.header(say("Noise → digit"))
        st.markdown(say(r"Generation runs the same blocks backwards: $x = f^{-1}(z)$. Start from Gaussian noise "
                    r"$z \sim \mathcal N(0, T^2 I)$ (a temperature $T < 1$ gives cleaner, less varied digits) or from "
                    r"the digit's own code $z = f(u)$, which comes back exactly: the flow is invertible."))
        c1, c2, c3 = st.columns([2, 2, 1])
        start = c1.radio("Start from", ["noise z ~ N(0, T²I)", "the encoded digit"], key="gen_start", horizontal=True,
                         bind=BIND, format_func=say)  # the option itself stays the URL's value
        if start == "the encoded digit":
            z, start_key = steps.states[-1].copy(), f"code:{source}:{seed}"
        else:
            temperature = c2.slider("Temperature T", 0.0, 1.5, 0.7, 0.05, key="gen_temperature", bind=BIND)
            gen_seed = c3.number_input("Seed", 0, 10**6, 0, key="gen_seed", bind=BIND)
            z, start_key = model.latents(1, temperature, gen_seed), f"noise:{temperature}:{gen_seed}"
        if y is not None:
            st.caption(f"Decoded as class **{y}**, the class the digit above is traced as.")
        back = generated(*ident, f"{start_key}:{y}", model, z, y)
        film, shown = plots.filmstrip(back)
        # about 84 px a picture, at most the page's width: on a projector across the room, not 45 of 18 px
        st.container(key="filmstrip").image(
            film, width=min(84 * len(shown), 756), caption=f"Steps {', '.join(map(str, shown))} of the {len(back)}, from the "
            "latent (left) to the picture (right), each stretched to its own grey range; the animation below steps "
            "through every one.")
        text, pic = st.columns([2, 3])
        with text:
            st.markdown("**What undoing each kind of block does**")
            for kind in dict.fromkeys(back.kinds):
                st.markdown(say(UNDO.get(kind, UNDO["coupling"])))
        with pic.container(key="gen_animation"):
            st.plotly_chart(animated(("gen", *ident, start_key, y), lambda: plots.steps_animation(back)), key="gen_chart",
                            config=PLAIN)

    generation()
    st.divider()
    toy_training_offer()

elif entry.kind == "points":
    data = explore.plane_data(entry.data)
    spread = float(explore.decomposition(model, traced(*ident, "points", None, model, data)).logdets.sum())
    st.markdown("A 2-D flow bends the plane, like Figure 1 of the Real NVP paper: **inference** $x \\to z$ "
                "carries the data onto a standard Gaussian, **generation** $z \\to x$ carries Gaussian samples "
                "onto the data. The grid shows how space is stretched, and "
                "$p(x) = \\mathcal N(z)\\,|\\det \\partial z/\\partial x|$ says what that does to the density: "
                "where the flow expands space going $x \\to z$ (grid cells grow, "
                "$|\\det \\partial z/\\partial x| > 1$), $p(x)$ is higher than $\\mathcal N(z)$; where it "
                "shrinks them, lower. "
                f"Over the {len(data)} training points drawn on the density map, this model's mean $\\log|\\det \\partial z/\\partial x|$ is "
                f"**{spread:+.2f} nats**: it {'expands' if spread > 0 else 'shrinks'} space there on average.")
    c1, c2, c3 = st.columns([2, 2, 1])
    direction = c1.radio("Direction", ["inference x → z", "generation z → x"], key="toy_direction", horizontal=True,
                         bind=BIND)
    square = explore.plane_extent(data)  # the toy sets' square, or one the data file's points fit in
    grid, per_line = explore.grid_lines(0.75 * square)
    if direction == "inference x → z":
        start, toy_key = data, "points"
        steps = traced(*ident, toy_key, None, model, start)
        lines = traced(*ident, "grid", None, model, grid)
    else:
        temperature = c2.slider("Temperature T", 0.1, 1.5, 1.0, 0.05, key="toy_temperature", bind=BIND)
        seed = c3.number_input("Seed", 0, 10**6, 0, key="toy_seed", bind=BIND)
        start, toy_key = model.latents(1500, temperature, seed), f"noise:{temperature}:{seed}"
        steps = generated(*ident, toy_key, model, start)
        lines = generated(*ident, "grid", model, grid)
    colour = np.arctan2(start[:, 1].numpy(), start[:, 0].numpy())  # follow each point by where it started
    extent = plots.plane_extent(steps.states)
    ticks, dens = density(*ident, square, model)
    titles = [f"{i}. {name} · KS to N(0, I): {ks:.3f}" for i, (name, ks) in enumerate(zip(steps.names, steps.ks))]
    left, right = st.columns(2)
    with left.container(key="toy_animation"):  # stepping and playing happen in the browser
        view = ("points", *ident, toy_key, opening(len(steps)))
        st.plotly_chart(animated(view, lambda: plots.points_animation(
            steps.states, colour, lines.states, per_line, extent, titles, opening(len(steps)))),
            key="toy_chart", config=PLAIN)
    right.plotly_chart(plots.density_figure(ticks, dens, data.numpy()), key="toy_density", config=PLAIN)

    def toy_block(i: int) -> None:
        st.markdown(f"#### {titles[i]}\n\n" + ABOUT_2D.get(steps.kinds[i], ABOUT[steps.kinds[i]]))
        check = jacobian(*ident, "points", None, i, model, steps)
        st.caption(f"**Invertibility audit.** This block: max |h − f⁻¹(f(h))| = {sci(steps.roundtrip[i])}; the "
                   f"whole flow: {sci(steps.flow_roundtrip)}, over {len(data)} points."
                   + ("" if check is None else f" log|det J| averaged over the first 64 points: {check[0]:.5f} "
                      f"from the block's own formula, {check[1]:.5f} from autograd's 2 × 2 Jacobians."))
        dec = explore.decomposition(model, steps)
        left, right = st.columns(2)
        left.markdown(f"**Where the likelihood comes from**, averaged over these {len(data)} training points "
                      "(the model list's figure is the test set's): "
                      f"log p(x) = {dec.log_prob:.3f} nats = {dec.bits_per_dim:.3f} bits/dim.")
        left.plotly_chart(plots.decomposition_figure(dec, "nats", i - 1 if i > 0 else None), key="toy_waterfall",
                          config=PLAIN)
        right.markdown("**How Gaussian is it now?** A standard Gaussian cloud looks like $\\mathcal N(0, 1)$ "
                       "along every line through the origin: the number is the worst KS distance over 16 lines.")
        right.plotly_chart(plots.ks_figure(steps, i), key="toy_ks", config=PLAIN)

    if direction == "inference x → z":
        st.markdown("Press **play** or drag the slider: each frame is the data after one more block.")
        st.subheader("One block at a time, with its formulas")
        stepper("block", len(steps), "Block", toy_block)
    else:
        st.markdown("Gaussian samples (coloured by their angle) and a regular grid in $z$-space, with the blocks "
                    "undone one by one. Press **play** or drag the slider.")
