"""Latent Playground: encode digits, walk between them, span the paper's manifold, and sample.

Laid out for a projector (1280x720): each tab's controls and its picture share the first screen; the
explanations follow the pictures."""
import math

import streamlit as st
import torch

from app import explore_plots, latent_plots
from flow import classes, explore, latent
from ui.classes import own_class, verdict
from ui.digits import digit_input, source_of
from ui.noise import noise_seed_input
from ui.sidebar import current_model
from ui.url_state import BIND

st.title(":material/explore: Latent Playground")
chosen = current_model()
if chosen is None:
    st.stop()
model, entry = chosen


@st.cache_resource(max_entries=8, show_spinner="Evaluating the density …")
def _plane(path: str, version: float, spec: str, _model) -> tuple[torch.Tensor, object]:
    """A 2-D model's data points and its density figure, once per checkpoint file version."""
    data = explore.plane_data(spec)
    ticks, dens = explore.density(_model, explore.plane_extent(data))
    return data, explore_plots.density_figure(ticks, dens, data.numpy())


def plane_playground() -> None:
    """2-D models: a walk between the codes of two data points, decoded into the plane, and samples."""
    data, base = _plane(str(entry.path), entry.version, entry.data, model)
    st.caption("The flow maps every point x of the plane to a latent z = f(x), two numbers, and back exactly, "
               "x = f⁻¹(z). Pick two data points and walk between their codes: decoded, the walk bends along the "
               "data where the straight line between them in the plane crosses empty space. The orange points "
               "are samples, z ~ N(0, T²I) decoded.")
    for key in ("from_point", "to_point"):  # a number past this data's end, from another model: start again
        if not 0 <= st.session_state.get(key, 0) < len(data):
            del st.session_state[key]
    controls, picture = st.columns([1, 2])
    with controls:
        c1, c2 = st.columns(2)
        a = c1.number_input(f"From point (of {len(data)})", 0, len(data) - 1, 0, key="from_point", bind=BIND)
        b = c2.number_input("To point", 0, len(data) - 1, len(data) // 2, key="to_point", bind=BIND)
        n = st.slider("Frames", 4, 32, 16, key="frames", bind=BIND)
        method = st.radio("Path", latent.METHODS, key="method", horizontal=True, bind=BIND,
                          help="slerp: the direction turns along the circle and the length changes linearly. "
                               "linear: the straight line in z.")
        temperature = st.slider("Temperature T", 0.0, 1.5, 0.7, 0.05, key="temperature", bind=BIND)
        sample_seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", bind=BIND, help="Seed of the samples' z")
    walk = latent.plane_walk(model, data[[int(a), int(b)]], n, method)
    samples = model.sample(500, temperature, int(sample_seed)).cpu()
    picture.plotly_chart(latent_plots.plane_walk_figure(base, walk, samples), key="plane_walk",
                         config={"displayModeBar": False})
    path, line = walk["path_log_p"], walk["line_log_p"]
    with controls:
        st.caption(f"Mean log p(x) along the decoded walk: **{path.mean():.2f} nats** (lowest {path.min():.2f}); "
                   f"along the straight line in the plane: **{line.mean():.2f} nats** (lowest {line.min():.2f}). "
                   "Hover a point of either for its own.")


if entry.kind == "points":
    plane_playground()
    st.stop()
say = entry.reword  # the text is about MNIST digits: said of this model's images where they are not
st.caption(say("The flow maps every digit x to a latent z = f(x) of the same size (784 numbers) and back "
               "exactly, x = f⁻¹(z). Pick digits, encode them, and decode points between and around them. "
               "Each decoded frame gets its own bits/dim: low means the model finds it a likely digit."))
seed = noise_seed_input("latent_noise_seed", st.sidebar)  # it sets every figure of every tab


@st.cache_data(max_entries=256, show_spinner=False)
def _encode(path: str, version: float, digit: bytes, _model) -> torch.Tensor:
    """One encoding per checkpoint file version and digit."""
    pixels = torch.frombuffer(bytearray(digit), dtype=torch.uint8).view(1, *_model.config.shape)
    return latent.encode_digits(_model, pixels)[0]


@st.cache_data(max_entries=64, show_spinner=False)
def _decode(path: str, version: float, z: bytes, seed: int, y: bytes, _model) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding per checkpoint file version, latents, noise seed and classes, shared by every session: a
    class opening the same default views decodes them once."""
    classes = torch.frombuffer(bytearray(y), dtype=torch.int64) if y else None
    return latent.decode_with_bits(_model, torch.frombuffer(bytearray(z), dtype=torch.float32).view(-1, _model.dim),
                                   seed, classes)


def decode(z: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and their bits/dim (`flow.latent.decode_with_bits`) of latents z (N, D), as classes y (N,) of a
    conditional model when given."""
    y = b"" if y is None else y.long().contiguous().numpy().tobytes()
    return _decode(str(entry.path), entry.version, z.float().contiguous().numpy().tobytes(), seed, y, model)


def encode(digits: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([_encode(str(entry.path), entry.version, d.numpy().tobytes(), model) for d in digits])


def digit_tag(key: str) -> str:
    """What a download's name says of the digit picked under `key`: "3-12" (class 3, index 12 of that class),
    "any-5", or "drawn" / "uploaded"."""
    source = source_of(key, entry)
    if source != "Test digit":
        return "drawn" if source == "Draw" else "uploaded"
    return f"{st.session_state.get(f'{key}_class', 'any')}-{st.session_state.get(f'{key}_index', 0)}"


def downloads(*files: tuple[str, bytes, str, str]) -> None:
    with st.container(horizontal=True):
        for label, data, name, mime in files:
            st.download_button(label, data, file_name=name, mime=mime, on_click="ignore", icon="⬇️")


@st.fragment
def interpolation(shown: bool) -> None:
    left, right = st.columns(2)
    with left:
        start = digit_input("from", "From", "3", entry)
    with right:
        end = digit_input("to", "To", "8", entry, default_index=1)
    c1, c2, c3 = st.columns([2, 2, 3])
    n = c1.slider("Frames", 4, 32, 16, key="frames", bind=BIND)
    method = c2.radio("Path", latent.METHODS, key="method", horizontal=True, bind=BIND,
                      help="slerp: the direction turns along the great circle and the length changes "
                           "linearly, so the path stays on the shell where Gaussian latents live. "
                           "linear: the straight line, which cuts inside that shell.")
    parts = latent.latent_parts(model)
    part = c3.radio("Latents that move", parts, key="part", disabled=len(parts) == 1, horizontal=True, bind=BIND,
                    help="A multi-scale model factors out half of its latents early and passes the "
                         "rest, the final latent, through every coupling (paper Sec. 3.6). The parts "
                         "that do not move stay those of the first input, so with coarse or fine the "
                         "last frame mixes the two inputs. Single-scale models have one latent.\n\n"
                         + "\n".join(f"- **{p}**: {what}" for p, what in latent.PARTS.items()))
    if start is None or end is None:
        st.info(say("Choose both digits above to see the path between them."))
        return
    if not shown:
        return
    z = encode([start, end])
    frames, bits = decode(latent.interpolate(model, z[0], z[1], n, method, part))
    t = torch.linspace(0, 1, n)
    labels = [f"frame {i} · t = {t[i]:.2f} · {bits[i]:.3f} bits/dim" for i in range(n)]
    gif = latent_plots.gif_of(frames)
    anim, strip = st.columns([1, 7], vertical_alignment="center")
    anim.image(gif, caption="back and forth")
    strip.plotly_chart(latent_plots.grid_figure(frames, n, labels, width=700), key="strip",
                       config={"displayModeBar": False})
    st.caption(say("Bits/dim of each decoded frame: higher means less like the digits the model learned."))
    st.plotly_chart(latent_plots.bits_figure(t, bits, entry.test_bpd, noun=entry.noun), key="bits_chart")
    measured = ("(with one noise draw, 5 of 400 test digits came back one grey level off in one pixel). Those codes "
                "are shorter than Gaussian draws, |z|/√D ≈ 0.48 rather than 1, and the frames between them are "
                "cleaner: 1.34 bits/dim half-way, against 1.76 for codes with noise (the shipped model, 20 pairs). "
                if entry.is_image_model else ". ")  # figures measured on an MNIST model
    st.caption(say("Both digits are encoded at the centres of their pixels' bins, without dequantization noise, so "
                   "that the path starts and ends on exactly the two 8-bit digits " + measured
                   + "The Layer Explorer shows both kinds of code."))
    midway(z, part)
    name = [entry.name, digit_tag("from"), "to", digit_tag("to"), method, "" if part == "all" else part]
    downloads(("Strip (PNG)", latent_plots.png_of(frames, n), latent_plots.export_name("interpolation", *name, ext="png"),
               "image/png"),
              ("Animation (GIF)", gif, latent_plots.export_name("interpolation", *name, ext="gif"), "image/gif"))


def midway(z: torch.Tensor, part: str) -> None:
    """Why the two paths score differently half-way: the numbers of both midpoints, and what they mean."""
    mids = torch.stack([latent.interpolate(model, z[0], z[1], 3, m, part)[1] for m in latent.METHODS])
    _, bits = decode(mids)
    score = dict(zip(latent.METHODS, bits.tolist()))
    size = dict(zip(latent.METHODS, (mids.norm(dim=1) / math.sqrt(model.dim)).tolist()))
    ends = (z.norm(dim=1) / math.sqrt(model.dim)).tolist()
    lower = min(score, key=score.get)
    st.caption(say(
        f"**Half-way, slerp against linear.** The two codes have lengths |z|/√D = {ends[0]:.2f} and {ends[1]:.2f}; "
        f"half-way slerp's point has {size['slerp']:.2f}, the straight line's {size['linear']:.2f}: a straight "
        "line between two points on a sphere cuts inside it, nearer the Gaussian's peak at z = 0, where the density "
        f"is highest. Here the linear midpoint scores {score['linear']:.3f} bits/dim and slerp's {score['slerp']:.3f}"
        + (": the model finds the shorter, blurrier frame *more* likely. High density is not typicality: Gaussian "
           "draws in 784 dimensions almost never land near the peak but on a thin shell at |z| ≈ √D, so a likely "
           "point can look less like a digit than the typical ones." if lower == "linear" else
           ": here slerp's midpoint scores lower, so the shorter latent is not the more likely frame for this "
              "pair. The density at z is only one of its two factors; the flow's log-det at the decoded frame is "
              "the other.")))


@st.fragment
def manifold(shown: bool) -> None:
    # each digit's picker beside its corner of the grid: z1 and z3 on the left, z2 and z4 on the right
    left, middle, right = st.columns([1, 1.2, 1])  # sides wide enough for a picker's three sources abreast
    corners = {"m1": (left, "z₁ (top left)", "1"), "m2": (right, "z₂ (top right)", "4"),
               "m3": (left, "z₃ (bottom left)", "7"), "m4": (right, "z₄ (bottom right)", "0")}
    digits = []
    for key, (column, label, default) in corners.items():
        with column:
            digits.append(digit_input(key, label, default, entry, default_index=len(digits)))
    with middle:
        grid = st.container()  # drawn once the settings below it are read
        settings = st.container(horizontal=True, vertical_alignment="bottom")  # the toggle below where narrow
        n = settings.slider("Grid size", 3, 11, 9, key="manifold_n", bind=BIND, width=160)
        full_turn = settings.toggle("Full turn", key="full_turn", bind=BIND,
                                    help=say("Both angles once around the circle, as in the paper. Off: a and b go "
                                             "from 0 to π/2, so the corners are your four digits. On: n steps of "
                                             "2π/n once around the circle, through minus each latent too; with a grid "
                                             "size divisible by 4 the grid passes through each digit."))
        bits = None
        if any(d is None for d in digits):
            grid.info(say("Choose all four digits to draw the manifold."))
        elif shown:
            frames, bits = decode(latent.manifold(encode(digits), n, full_turn))
            angles = (latent.manifold_angles(n, full_turn) / math.pi).tolist()
            labels = [f"a = {angles[i // n]:.2f}π · b = {angles[i % n]:.2f}π · {bits[i]:.3f} bits/dim"
                      for i in range(n * n)]
            grid.plotly_chart(latent_plots.grid_figure(frames, n, labels, width=300), key="manifold_grid",
                              config={"displayModeBar": False})
            name = [entry.name, *(digit_tag(k) for k in corners), f"{n}x{n}", "full-turn" if full_turn else ""]
            downloads(("Manifold (PNG)", latent_plots.png_of(frames, n),
                       latent_plots.export_name("manifold", *name, ext="png"), "image/png"))
    st.latex(r"z(a, b) = \cos a\,(\cos b\; z_1 + \sin b\; z_2) + \sin a\,(\cos b\; z_3 + \sin b\; z_4)")
    st.caption(say("The latent manifold of the Real NVP paper (Sec. 4.2, drawn there from four validation "
               "images): four encoded digits span a curved sheet of latents of about their length; each "
               "cell decodes one point of it."
               + ("" if bits is None else f" Bits/dim of the cells: {bits.min():.3f} to {bits.max():.3f}, mean "
                                          f"{bits.mean():.3f} (hover a cell for its own).")))


EVERY_CLASS = "one row per class"


@st.fragment
def samples(shown: bool) -> None:
    controls, picture = st.columns(2)
    with controls:
        temperature = st.slider("Temperature T", 0.0, 1.5, 0.7, 0.05, key="temperature", bind=BIND)
        c1, c2 = st.columns(2)
        sample_seed = c1.number_input("Seed", 0, 2**31 - 1, 0, key="seed", bind=BIND, help="Seed of the latents z")
        n = c2.select_slider("Samples", [16, 36, 64], 64, key="n_samples", bind=BIND)
        wanted = None
        if model.num_classes:  # draw me a 3
            wanted = st.selectbox("Class", [EVERY_CLASS, *range(model.num_classes)], key="sample_class", bind=BIND,
                                  help="A class-conditional model samples the class you ask for: z ~ N(0, T² I) "
                                       "read in that class's coordinates. One row per class: ten samples of each, "
                                       "every column one z drawn as each class.")
    if not shown:
        return
    columns = math.isqrt(n)
    if wanted == EVERY_CLASS:
        z, y = classes.class_grid(model, 10, temperature, int(sample_seed))
        columns = 10
    else:
        z = model.latents(n, temperature, int(sample_seed))
        y = None if wanted is None else torch.full((n,), int(wanted))
    frames, bits = decode(z, y)
    labels = [f"sample {i}{'' if y is None else f' · class {y[i]}'} · {b:.3f} bits/dim"
              for i, b in enumerate(bits.tolist())]
    picture.plotly_chart(latent_plots.grid_figure(frames, columns, labels, width=400), key="samples_grid",
                         config={"displayModeBar": False})
    test = f"; the test set averages {entry.test_bpd:.3f}" if entry.test_bpd is not None else ""
    with controls:
        st.caption(f"Mean {bits.mean():.3f} bits/dim (hover a sample for its own){test}.")
        st.caption(say("Samples decode z ~ N(0, T² I). Temperature T < 1 draws latents nearer the centre: "
                       "cleaner, more typical digits, less variety. At T = 0 every sample is the decoded zero latent."))
        if wanted == EVERY_CLASS:
            st.caption(f"Rows: classes 0 (top) to {model.num_classes - 1} (bottom); each column decodes one z as "
                       "every class.")
        if model.num_classes:
            st.caption("The bits/dim are of the marginal density, the mixture of every class: the number every "
                       "page shows for a digit. Asked for one class, the flow decodes the same kind of Gaussian "
                       "latent through that class's own mean and scale, so the class is a choice, not luck.")
        what = [] if wanted is None else ["by-class" if wanted == EVERY_CLASS else f"class{wanted}"]
        downloads(("Samples (PNG)", latent_plots.png_of(frames, columns),
                   latent_plots.export_name("samples", entry.name, *what, f"T{temperature:.2f}", f"seed{sample_seed}",
                                            ext="png"), "image/png"))


@st.fragment
def handwriting(shown: bool) -> None:
    """The same handwriting, another digit: one digit encoded with its own class, decoded as every class."""
    picker, row = st.columns([1, 2])
    with picker:
        digit = digit_input("hand", "Digit", "7", entry)
    if digit is None or not shown:
        return
    own, how = own_class(model, "hand", digit, seed)
    frames, bits = decode(*classes.handwriting_latents(model, digit, own))
    labels = [f"class {k} · {b:.3f} bits/dim" for k, b in enumerate(bits.tolist())]
    with row:
        row.plotly_chart(latent_plots.grid_figure(frames, model.num_classes, labels, width=700), key="hand_row",
                         config={"displayModeBar": False})
        st.caption(f"Encoded as class **{own}** ({how}), z = f(x) read in class {own}'s coordinates, then decoded "
                   f"as every class 0 to {model.num_classes - 1}, left to right. The class lives in the prior's mean "
                   "and scale; what z keeps is the rest: the slant, the stroke width, the size. "
                   f"Frame {own} is your digit back.")
        downloads(("Row (PNG)", latent_plots.png_of(frames, model.num_classes),
                   latent_plots.export_name("handwriting", entry.name, digit_tag("hand"), ext="png"), "image/png"))


@st.fragment
def which_digit(shown: bool) -> None:
    """The flow as a classifier: p(y | x) by Bayes' rule from the densities of every class."""
    picker, chart = st.columns([1, 2])
    with picker:
        digit = digit_input("which", "Digit", "4", entry)
    if digit is None or not shown:
        return
    with chart:
        verdict(model, digit, seed, "which", entry.noun)
        st.caption("p(y | x) = p(x | y) p(y) / Σₖ p(x | k) p(k), with p(y) uniform: the class whose density gives "
                   "this digit the shortest code wins, and one bit per pixel less is a factor 2^784 in probability, "
                   "so small differences in bits/dim make sure answers. Draw a 4 that could be a 9 to see a doubt.")


TABS = {"Interpolate": interpolation, "Manifold": manifold, "Sample": samples}
if model.num_classes:  # a class-conditional model: its classes
    TABS.update({"Same handwriting": handwriting, "Which digit?": which_digit})
# Every tab draws its controls (their values stay in the session and the URL), but only the open one decodes: a
# class opening the page pays for one tab, and switching tabs reruns the page.
for tab, draw in zip(st.tabs(list(TABS), key="tab", bind=BIND), TABS.values()):
    with tab:
        draw(tab.open)
st.caption(say(f"**Bits/dim of a frame**: the frame as an 8-bit image, dequantized with one uniform noise draw "
           f"(seed {seed}), on the [0, 256) pixel scale: `Flow.bits_per_dim`, the number the Layer Explorer "
           "and `python -m flow.evaluate` give the same digit with the same seed"
           + (f" (the model card's {entry.test_bpd:.3f} is their average over the test digits)."
              if entry.test_bpd is not None else ".")))
