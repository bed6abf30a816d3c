"""The guided lesson's content: eight steps from the change-of-variables formula to sampling, as data.

Each `Step` is a short text with its formula and a `Question` to answer before the reveal. Which option is
right is decided by the live numbers of the model on screen (`Facts`), not written down, so a question can
never claim what the model does not do; `why` explains the verdict with those numbers. The numbers come
from the library (`flow.explore`, `flow.latent`, `flow.lab`); the functions below only gather them. The
views that draw each step are in ui/lesson.py, the navigation in app_pages/lesson.py.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.catalog import ModelEntry
from flow import explore, lab, latent
from flow.data import load_mnist
from flow.model import Flow

Facts = dict[str, float | str]  # the live numbers a step's question is judged and explained with

TOY = "toy-2d-moons"  # the 2-D step's shipped model, whatever the sidebar holds
DIGITS = ("3", "8")  # the lesson's test digits: the first 3 and the first 8 of the MNIST test set
SEED = 0  # the dequantization noise's seed, as every page's default
FRAMES = 9  # interpolation frames: the middle one is t = 1/2
SAMPLES = 4  # samples per temperature: a realnvp decode takes a while on a CPU
TEMPERATURES = (0.0, 0.5, 1.0, 1.5)  # the options of the temperature question
CENTRES = "without dequantization noise (bin centres)"  # the Layer Explorer's trace_mode option, verbatim


def pick_model(entries: Sequence[ModelEntry], images: bool, chosen: str | None = None) -> ModelEntry | None:
    """The model a step runs on. An MNIST step: the sidebar's model (path `chosen`) when it is a usable MNIST
    one, else the first usable MNIST model in the catalog's order. The 2-D step: the shipped toy-2d-moons, else
    the first usable 2-D model. None if there is none of the kind."""
    usable = [e for e in entries if e.error is None and (e.is_image_model if images else e.kind == "points")]
    preferred = (lambda e: str(e.path) == chosen) if images else (lambda e: e.name == TOY)
    return next((e for e in usable if preferred(e)), usable[0] if usable else None)


def small(x: float) -> str:
    """A non-negative error for a sentence: "exactly 0", "< 1e-6" or two significant digits in scientific
    notation ("{:.1g}" would print a tiny number as 0)."""
    return "exactly 0" if x == 0 else "< 1e-6" if x < 1e-6 else f"{x:.1e}"


COMPARED = ("better than both", "between the two", "worse than both")  # bits/dim: lower is better


def compared(value: float, a: float, b: float) -> int:
    """The index in `COMPARED` of how bits/dim `value` ranks against `a` and `b`."""
    lo, hi = sorted((a, b))
    return 0 if value < lo else 2 if value > hi else 1


def test_digit(label: str) -> tuple[torch.Tensor, int]:
    """The first MNIST test digit of a class, uint8 (1, 1, 28, 28), and its index in the test set."""
    images, labels = load_mnist("test")
    n = int(torch.nonzero(labels == int(label))[0])
    return images[n].view(1, 1, 28, 28).clone(), n


def first(steps: explore.Steps, word: str) -> int | None:
    """The first trace entry whose name holds `word` ("checkerboard", "channel", "squeeze", "factor-out", ...)."""
    return next((i for i, name in enumerate(steps.names) if word in name), None)


# ----- the numbers of each step ---------------------------------------------------------------------------
def change_of_variables_facts(model: Flow, points: torch.Tensor, dens: np.ndarray) -> Facts:
    """2-D model: log|det df/dx| and p(x) at the data points, and the density's mean over the square
    (`explore.density`'s grid: its mass there over its area)."""
    with torch.no_grad():
        logdet = model(points)[1].mean().item()
        p_data = model.log_prob(points).exp().mean().item()
    moves = ("stretches the plane around the moons apart: a small patch of x becomes a larger one of z, so the "
             "probability of that larger patch of the Gaussian is packed into the small patch of x" if logdet > 0 else
             "squeezes the plane around the moons together: a patch of x becomes a smaller one of z, so its "
             "probability is spread over a larger patch of x than of the Gaussian")
    return {"logdet": logdet, "det": math.exp(logdet), "p_data": p_data, "p_square": float(dens.mean()),
            "moves": moves}


def coupling_jacobian(model: Flow, steps: explore.Steps, i: int) -> tuple[np.ndarray, int]:
    """The Jacobian dy/dx (D x D, autograd) of coupling entry i at the traced input, rows and columns
    reordered so that the kept half x_a (mask b = 1) comes first, and the size of that half."""
    module = explore.blocks(model)[i]
    shape = steps.parts[i - 1][-1].shape  # the flowing part h that the coupling transforms
    size = math.prod(shape)
    x = torch.from_numpy(steps.states[i - 1, 0, -size:]).to(model.device)
    jac = torch.func.jacrev(lambda v: module(v.view(1, *shape))[0].flatten())(x).detach().cpu().double().numpy()
    kept = steps.couplings[i][0][0, -size:] == 1
    order = np.argsort(~kept, kind="stable")
    return jac[np.ix_(order, order)], int(kept.sum())


def jacobian_facts(steps: explore.Steps, i: int, jac: np.ndarray, kept: int) -> Facts:
    """The blocks of a reordered coupling Jacobian (`coupling_jacobian`): [[dy_a/dx_a, dy_a/dx_b],
    [dy_b/dx_a, dy_b/dx_b]], the coupling's own log-det and autograd's log|det| of the whole matrix."""
    return {"upper": float(np.abs(jac[:kept, kept:]).max()), "lower": float(np.abs(jac[kept:, :kept]).max()),
            "identity": small(float(np.abs(jac[:kept, :kept] - np.eye(kept)).max())), "dim": len(jac), "kept": kept,
            "sum_s": float(steps.logdets[i]), "slogdet": float(np.linalg.slogdet(jac)[1]), "block": steps.names[i]}


def gaussian_facts(model: Flow, steps: explore.Steps) -> Facts:
    """How Gaussian the digit's values are after the logit and after the last block (KS distance to N(0, 1)),
    and what the couplings add to log p."""
    couplings = [k for k, kind in enumerate(steps.kinds) if kind == "coupling"]
    ks_logit, ks_last = float(steps.ks[first(steps, "logit")]), float(steps.ks[-1])
    level = explore.ks_noise_level(model.dim)
    return {"ks_logit": ks_logit, "ks_last": ks_last, "level": level, "n_couplings": len(couplings),
            "couplings": float(steps.logdets[couplings].sum()), "dim": model.dim,
            "moves": ("falls from", "rises from", "stays about the same, from")[_order(ks_last, ks_logit, level)]}


PATTERNS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {  # (rows, cols) -> one polarity of a mask
    "every other row": lambda r, c: r % 2 == 0,
    "a checkerboard of 2×2 squares": lambda r, c: (r // 2 + c // 2) % 2 == 0,
    "every other pixel, like a chessboard": lambda r, c: (r + c) % 2 == 0,
    "the top half": lambda r, c: r < len(r) // 2,
}


MASK_OPTIONS = (*PATTERNS, "another pattern")


def mask_pattern(mask: np.ndarray) -> str:
    """Which of `PATTERNS` a coupling's mask b forms in the 28 x 28 picture (b = 1 or b = 0 on it), or
    "another pattern"."""
    r, c = np.indices(mask.shape)
    for name, pattern in PATTERNS.items():
        if np.array_equal(mask == 1, pattern(r, c)) or np.array_equal(mask == 0, pattern(r, c)):
            return name
    return MASK_OPTIONS[-1]


def mask_facts(steps: explore.Steps, checkerboard: int, channel: int) -> Facts:
    """The patterns the two kinds of mask make in the picture, and the shapes they act on."""
    return {"checkerboard": mask_pattern(steps.block(checkerboard)["mask"]),
            "channel": mask_pattern(steps.block(channel)["mask"]),
            "checkerboard_shape": "×".join(map(str, steps.parts[checkerboard][-1].shape)),
            "channel_shape": "×".join(map(str, steps.parts[channel][-1].shape))}


def factor_out_facts(steps: explore.Steps, i: int) -> Facts:
    """How many dimensions leave at factor-out entry i and how many flow on."""
    *_, leaving, flowing = steps.parts[i]
    return {"leaving": math.prod(leaving.shape), "flowing": math.prod(flowing.shape), "label": leaving.label,
            "shape": "×".join(map(str, flowing.shape)),
            "after": sum(kind == "coupling" for kind in steps.kinds[i:])}


def dequantization_facts(model: Flow, noisy: np.ndarray, centres: explore.Steps) -> Facts:
    """The digit's bits/dim with the noise of seeds 0, 1, ... (`Flow.bits_per_dim`) and at the bin centres (the
    decomposition of the trace without noise: a density at one point, not a bits/dim)."""
    centre = explore.decomposition(model, centres).bits_per_dim
    facts = {"noisy": float(noisy[SEED]), "spread": float(noisy.max() - noisy.min()), "seeds": len(noisy),
             "centres": centre}
    order = _order(centre, facts["noisy"], 0.005)
    facts["reading"] = ("The model's density is higher at the bin centres than at the noisy point: it put its peaks "
                        "near the centres, points it never saw in training" if order == 0 else
                        "The model's density is lower at the bin centres than at the noisy point: it spread each "
                        "pixel's value over its bin rather than peaking at the centre" if order == 1 else
                        "The model's density is about as high at the bin centres as at the noisy point: it spread "
                        "each pixel's value evenly over its bin")
    return facts


def temperature_facts(sweep: dict[float, tuple[torch.Tensor, np.ndarray]]) -> Facts:
    """The median bits/dim of the samples at each temperature of the question, and the lowest's index."""
    medians = [float(np.median(sweep[t][1])) for t in TEMPERATURES]
    best = int(np.argmin(medians))
    reading = ("The lowest temperature sits nearest the mode of the Gaussian, where its density peaks, and here the "
               "model's likelihood peaks there too" if best == 0 else
               f"Here T = {TEMPERATURES[best]:g} scores best, not the lowest temperature: the model's density over "
               "pictures need not peak where the Gaussian's does, since the log-det adds to log N")
    return {"medians": ", ".join(f"T = {t:g}: **{m:.2f}**" for t, m in zip(TEMPERATURES, medians)),
            "best": best, "samples": len(sweep[TEMPERATURES[0]][1]), "reading": reading}


def interpolation_facts(bits: torch.Tensor, line: Facts) -> Facts:
    """The bits/dim of the two end digits and of the half-way frame of the slerp (`bits`, one per frame), how
    the middle compares with the ends, and the straight line's half-way point beside it (`straight_middle`)."""
    start, end, middle = float(bits[0]), float(bits[-1]), float(bits[len(bits) // 2])
    lower = line["linear"] < middle
    return {"start": start, "end": end, "middle": middle, "verdict": COMPARED[compared(middle, start, end)], **line,
            "linear_vs": "lower" if lower else "higher",
            "reading": "nearer the Gaussian's mode the density is higher, yet a point so near it is not typical: "
                       "Gaussian draws in this many dimensions almost never land there, so a higher likelihood "
                       "does not make a more typical digit" if lower else
                       "here the model's density does not follow the prior's towards its mode"}


def straight_middle(model: Flow, z: torch.Tensor) -> Facts:
    """The half-way points of the slerp and of the straight line between two codes z (2, D): their norms |z| and
    the straight line's half-way frame's bits/dim (`latent.decode_with_bits`)."""
    half = {m: latent.interpolate(model, z[0], z[1], FRAMES, m)[FRAMES // 2] for m in latent.METHODS}
    bits = latent.decode_with_bits(model, half["linear"][None], SEED)[1]
    return {"linear": float(bits[0]), "norm_linear": float(half["linear"].norm()),
            "norm_slerp": float(half["slerp"].norm())}


def interpolation_frames(model: Flow, digits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Facts]:
    """The slerp between two digits' codes (bin centres, as the Latent Playground encodes them), decoded, with
    each frame's bits/dim, and the straight line's half-way point (`straight_middle`)."""
    z = latent.encode_digits(model, digits)
    frames, bits = latent.decode_with_bits(model, latent.interpolate(model, z[0], z[1], FRAMES, "slerp"), SEED)
    return frames, bits, straight_middle(model, z)


def temperature_sweep(model: Flow) -> dict[float, tuple[torch.Tensor, np.ndarray]]:
    """`lab.by_temperature` at the question's temperatures."""
    return lab.by_temperature(model, SAMPLES, SEED, TEMPERATURES)


# ----- the steps -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    prompt: str
    options: tuple[str, ...]
    answer: Callable[[Facts], int]  # the index of the option that the live numbers make right
    why: str  # the explanation, formatted with the facts


@dataclass(frozen=True)
class Step:
    key: str  # names its view in ui/lesson.py
    title: str
    text: str  # markdown, with the formula in LaTeX
    question: Question
    images: bool = True  # an MNIST model (else a 2-D one)
    wide: bool = False  # the view needs the page's width: drawn below the text, not beside it


def _order(a: float, b: float, tolerance: float) -> int:
    """0 if a < b, 1 if a > b, 2 if they are within `tolerance`."""
    return 2 if abs(a - b) <= tolerance else int(a > b)


STEPS = (
    Step("change-of-variables", "Change of variables", r"""A flow is an invertible map $f$ from data $x$ to a latent
$z = f(x)$ with a simple density, a standard Gaussian. The density of the data follows from the change of variables
(paper Eq. 3):

$$p_X(x) = p_Z\big(f(x)\big)\,\left|\det \frac{\partial f(x)}{\partial x}\right|.$$

The determinant measures how much $f$ stretches space around $x$: where $f$ squeezes a region together, the region
keeps its probability in a smaller volume of $z$. On the right, a 2-D flow trained on two moons: press **play** to
watch it carry the data (and a grid) onto $\mathcal N(0, I)$; below it, the density it learned.""",
         Question("Press play and watch the grid cells around the moons on their way from x to z. There, "
                  "|det ∂f/∂x| is …",
                  ("bigger than 1, so p(x) is higher than N(f(x))", "smaller than 1, so p(x) is lower than N(f(x))"),
                  lambda f: int(f["logdet"] < 0),
                  "At the data points log|det ∂f/∂x| averages **{logdet:+.2f} nats** (|det| ≈ {det:.2g}): the flow "
                  "{moves}. So p(x) averages **{p_data:.3f}** at the data "
                  "points against **{p_square:.3f}** over the whole square, its mass there over its area."),
         images=False),
    Step("coupling", "The affine coupling layer", r"""Real NVP builds $f$ from **affine coupling layers** (paper
Eqs. 4-5). A binary mask $b$ splits the input in two: the half $x_a$ where $b = 1$ passes unchanged and is all that
the networks $s$ and $t$ see; the other half $x_b$ is scaled and shifted:

$$y_a = x_a, \qquad y_b = x_b \odot \exp\big(s(x_a)\big) + t(x_a).$$

Order the dimensions with $x_a$ first, and the Jacobian is block triangular (Eq. 6):

$$\frac{\partial y_a}{\partial x_a} = I, \qquad \frac{\partial y_a}{\partial x_b} = 0,$$

$$\frac{\partial y_b}{\partial x_b} = \operatorname{diag}\big(\exp s(x_a)\big).$$

$s$ and $t$ can be any networks, as deep as we like: neither the inverse nor the determinant needs to invert them.
On the right, the Jacobian of one coupling of the model at this digit, built column by column with autograd
($\log_{10}|J|$, black where an entry is exactly 0).""",
         Question("Which block of this coupling's Jacobian is exactly zero?",
                  ("the top right, ∂y_a/∂x_b", "the bottom left, ∂y_b/∂x_a", "none: every output depends on every "
                                                                              "input"),
                  lambda f: 0 if f["upper"] == 0 else 1 if f["lower"] == 0 else 2,
                  "In the {dim} × {dim} Jacobian of {block} the largest |∂y_a/∂x_b| is **{upper:g}**, while ∂y_b/∂x_a "
                  "has entries up to {lower:.2f}, and ∂y_a/∂x_a differs from the identity by {identity}. Triangular: "
                  "its determinant is the product of the diagonal, exp(s). The block's own formula gives "
                  "log|det J| = Σ s = **{sum_s:.3f} nats**; autograd's slogdet of the whole matrix "
                  "**{slogdet:.3f}**.")),
    Step("log-det", "The log-det is a sum of s", r"""Since the Jacobian is triangular, a coupling's log-determinant
is the sum of $s$ over the half it changes, with no determinant to compute (Eq. 6):

$$\log\left|\det \frac{\partial y}{\partial x}\right| = \sum_j \big((1 - b) \odot s(x_a)\big)_j.$$

A flow is a composition $f = f_K \circ \dots \circ f_1$, and log-determinants of a composition add, so the
log-likelihood of the digit is a sum, block by block (Eq. 3 again, in logs):

$$\log p(x) = \log \mathcal N\big(z; 0, I\big) + \sum_k \log\left|\det \frac{\partial h_k}{\partial h_{k-1}}\right|.$$

On the right, that sum for this digit: each bar is one block's term, the last bar the total.""",
         Question("After the logit, this digit's values are far from Gaussian (most pixels are black). After the "
                  "last block, will they look more or less like draws from N(0, 1)?",
                  ("more Gaussian", "less Gaussian", "about the same"),
                  lambda f: _order(f["ks_last"], f["ks_logit"], f["level"]),
                  "The Kolmogorov-Smirnov distance to N(0, 1) {moves} **{ks_logit:.3f}** after the logit to "
                  "**{ks_last:.3f}** after the last block; below about {level:.3f} is within the sampling noise of "
                  "{dim} Gaussian draws. The {n_couplings} couplings' Σ s terms add {couplings:+.1f} nats to log p.")),
    Step("masks", "Checkerboard and channel masks", r"""Which half is $x_a$? Real NVP alternates two masks (paper
Sec. 3.4, Fig. 3): a **checkerboard** over the spatial positions, $b_{ij} = (i + j) \bmod 2$, and a **channel-wise**
mask that keeps the first half of the channels,

$$b_{c} = \mathbb 1\left[c < C/2\right],$$

and each next coupling swaps the roles ($b \to 1 - b$) so that every value gets changed. On the right, one coupling of
each kind on this digit: the mask $b$ (white: kept), the scale $s$, the shift $t$, and what they do to the values. Every
map is drawn in the 28×28 layout of the input, each value at the pixel it came from.""",
         Question("Drawn back on the 28×28 digit, which pixels does the first channel-wise coupling keep (b = 1)?",
                  MASK_OPTIONS, lambda f: MASK_OPTIONS.index(f["channel"]),
                  "The channel-wise coupling at {channel_shape} keeps **{channel}** of the picture: a squeeze stacks "
                  "the pixels of each patch as channels, so splitting the channels splits the positions inside every "
                  "patch. The checkerboard coupling at {checkerboard_shape} keeps {checkerboard}: a checkerboard "
                  "over the squeezed grid, whose cells are patches of pixels.")),
    Step("squeeze", "Squeeze and factor-out", r"""Two moves that change no value, so their log-det is 0 (paper
Sec. 3.6). **Squeeze** turns each 2×2×C patch into a 1×1×4C one: the tensor gets coarser and deeper, so the
convolutions of $s$ and $t$ see further. **Factor-out** sends half of the dimensions straight to the prior as $z_i$
at each scale, so the later, costlier couplings work on fewer:

$$\big(z^{(i)}, h^{(i)}\big) = f^{(i)}\big(h^{(i-1)}\big), \qquad h^{(0)} = x,$$

$$z = \big(z^{(1)}, \dots, z^{(L)}\big).$$

Below: the tensor before and after the first squeeze and the factor-out, as the network holds it (channels side by
side), and where each input pixel's dimension goes.""",
         Question("After the factor-out, how many of the digit's 784 dimensions flow on to the next couplings?",
                  ("all 784", "392, half of them", "196, a quarter"),
                  lambda f: {784: 0, 392: 1, 196: 2}.get(int(f["flowing"]), -1),
                  "**{flowing}** flow on as h ({shape}) through the last {after} couplings; {leaving} leave as {label} "
                  "and go straight to the Gaussian prior. Nothing is computed: log|det J| = 0."),
         wide=True),
    Step("dequantization", "Dequantization and bits/dim", r"""Pixels are integers, $x \in \{0, \dots, 255\}^D$, and a
density on integers could grow without bound. So training adds uniform noise (paper Sec. 4.1),

$$u = \frac{x + n}{256}, \qquad n \sim U[0, 1)^D,$$

and then $\mathbb E_n\big[-\log p(u)\big] + D \log 256 \ge -\log P(x)$: the likelihood of the noisy digit bounds the
probability of the 8-bit one. Reported per dimension in bits, on the $[0, 256)$ pixel scale:

$$\text{bits/dim} = \frac{-\log p(u) + D \log 256}{D \log 2}.$$

On the right, this digit's bits/dim with several draws of the noise.""",
         Question("Score the digit at the centres of its pixels' bins, u = (x + ½)/256, without noise. Compared with "
                  "the noisy figure, its 'bits/dim' will be …",
                  ("lower", "higher", "the same"),
                  lambda f: _order(f["centres"], f["noisy"], 0.005),
                  "**{centres:.3f}** at the bin centres against **{noisy:.3f}** with noise (seed 0; {seeds} seeds "
                  "span {spread:.3f}). {reading}. That number is a density at one "
                  "point, not the digit's bits/dim: only the noisy one bounds −log₂ P(x) / D.")),
    Step("temperature", "Temperature", r"""To sample, draw $z$ from the prior and run the flow backwards, which is
exact and as fast as the forward pass (paper Eq. 8):

$$x = f^{-1}(z), \qquad z \sim \mathcal N(0, T^2 I).$$

The temperature $T$ scales the latent: $T < 1$ draws from nearer the mode, which gives cleaner but less varied
digits; $T > 1$ from the tails. In $D = 784$ dimensions nearly all of a Gaussian's mass lies in a thin shell at
$|z| \approx T\sqrt D$, far from its peak at $z = 0$. On the right, the same directions at every temperature.""",
         Question("Which temperature's samples get the lowest bits/dim (the highest likelihood)?",
                  tuple(f"T = {t:g}" for t in TEMPERATURES),
                  lambda f: int(f["best"]),
                  "Median bits/dim of the {samples} samples at each temperature: {medians}. {reading}. The highest "
                  "likelihood is not the most typical: real digits live in the typical set, not at the peak. The "
                  "Likelihood lab sets these beside the test digits'.")),
    Step("interpolation", "Interpolation", r"""Because $f$ is a bijection, every digit has exactly one code, and every
point between two codes decodes to a picture. Spherical interpolation walks round, as on a sphere: its length $|z|$
goes evenly from one code's to the other's, where a straight line would cut inside, nearer the mode at $z = 0$:

$$z(t) = \big((1 - t)|z_0| + t|z_1|\big)\,\frac{\sin\big((1 - t)\omega\big)\,\hat z_0 + \sin(t\omega)\,\hat z_1}{\sin\omega},$$

$$\cos\omega = \hat z_0 \cdot \hat z_1,$$

and $x(t) = f^{-1}\big(z(t)\big)$. On the right, from a 3 to an 8 of the test set.""",
         Question("Half-way, at t = ½, will the decoded picture score better (lower) bits/dim than the two digits?",
                  COMPARED, lambda f: COMPARED.index(f["verdict"]),
                  "The 3 scores **{start:.3f}** bits/dim and the 8 **{end:.3f}**; the half-way frame **{middle:.3f}**, "
                  "**{verdict}**. A bijection gives every point of the path a picture and a likelihood: how far the "
                  "middle departs from the ends says how far the path strays from what the model calls a digit. "
                  "The straight line's half-way point lies nearer z = 0 (|z| = {norm_linear:.1f} against "
                  "{norm_slerp:.1f} on the slerp) and scores **{linear:.3f}**, {linear_vs} than "
                  "the slerp's: {reading}.")),
)
