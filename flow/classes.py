"""What a class-conditional flow (`FlowConfig.num_classes`) can do with its classes: samples of each class, one
digit's latent drawn as every class (the same handwriting, another digit), and the flow as a classifier, read out
as a verdict. Plus the independent judge of samples that the model card and the tests use: a nearest-neighbour
vote on real training examples, which knows nothing of the flow.

Images are (B, C, H, W) floats in [0, 1] (decoded) or 8-bit pixels; classes are int64 indices 0..K-1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flow.model import Flow, is_pixels

SURE = 0.9  # p(y | x) of the top class at which the verdict calls the answer sure


def _conditional(model: Flow) -> int:
    if not model.num_classes:
        raise ValueError("this model is unconditional (num_classes 0): train one with --conditional")
    return model.num_classes


def class_rows(num_classes: int, per_class: int) -> Tensor:
    """Classes for a grid of one row per class: 0 x per_class, 1 x per_class, ... -> (K * per_class,) int64."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def class_grid(model: Flow, per_class: int, temperature: float = 0.7, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(latents (K * per_class, D), classes) of a grid of one row per class whose columns share their latents:
    z ~ N(0, T^2 I) drawn once from the seed (`Flow.latents`), so a column is one z drawn as every class."""
    k = _conditional(model)
    return model.latents(per_class, temperature, seed).repeat(k, 1), class_rows(k, per_class)


def samples_by_class(model: Flow, per_class: int, temperature: float = 0.7, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(samples (K * per_class, *shape) in [0, 1], their classes): `per_class` samples of each class, class by
    class, decoded from `class_grid`'s latents. On the CPU, without autograd."""
    z, y = class_grid(model, per_class, temperature, seed)
    with torch.no_grad():
        return model.decode(z, y).cpu(), y


def handwriting_latents(model: Flow, x: Tensor, y: int) -> tuple[Tensor, Tensor]:
    """(z (K, D), classes 0..K-1): one example x ((1, *shape) or (*shape)) of class y encoded with its own class,
    its latent once for every class: what `carry_handwriting` decodes."""
    k = _conditional(model)
    x = x.unsqueeze(0) if x.dim() == len(model.config.shape) else x
    if len(x) != 1:
        raise ValueError(f"carry_handwriting takes one example, got {len(x)}")
    with torch.no_grad():
        return model.encode(x, y).cpu().expand(k, -1), torch.arange(k)


def carry_handwriting(model: Flow, x: Tensor, y: int) -> Tensor:
    """One example x of class y, encoded with its own class and decoded with every class: (K, *shape) in [0, 1],
    row k the latent of x drawn as class k (row y is x itself, at its bin centres). What the latent keeps is what
    the class prior does not explain: the slant, the stroke width, the style."""
    z, classes = handwriting_latents(model, x, y)
    with torch.no_grad():
        return model.decode(z, classes).cpu()


@dataclass(frozen=True)
class ClassVerdict:
    """The flow as a classifier on one example: p(y | x) per class (`Flow.classify`), the bits/dim of x under
    each class (`Flow.class_bits`), and the marginal bits/dim; `answer` and `runner_up` are the two likeliest
    classes."""

    probabilities: Tensor  # (K,), summing to one
    bits: Tensor  # (K,) bits/dim of p(x | k)
    marginal_bits: float
    answer: int
    runner_up: int

    @property
    def kind(self) -> str:
        """"sure" (the top class has p >= SURE), "doubt" (the top two share that much), or "unsure"."""
        p = self.probabilities
        if p[self.answer] >= SURE:
            return "sure"
        return "doubt" if p[self.answer] + p[self.runner_up] >= SURE else "unsure"

    def sentence(self, name: str = "digit") -> str:
        """What the verdict says, in one sentence, with the figures."""
        p, a, b = self.probabilities, self.answer, self.runner_up
        gap = float(self.bits[b] - self.bits[a])
        if self.kind == "sure":
            return (f"A sure answer: a {a} (p = {p[a]:.3f}). Under class {b}, the next likeliest, the same {name} "
                    f"costs {gap:.4f} more bits per pixel.")
        if self.kind == "doubt":
            return (f"A {a}-or-{b} doubt: {a} with p = {p[a]:.2f}, {b} with p = {p[b]:.2f}; the two classes' "
                    f"densities differ by only {gap:.4f} bits per pixel.")
        top = torch.argsort(p, descending=True)[:3].tolist()
        return ("No class stands out: " + ", ".join(f"{k} (p = {p[k]:.2f})" for k in top)
                + f". Under those classes the {name} costs nearly the same bits per pixel, so the flow cannot say "
                  "which it is.")


def which_class(model: Flow, x: Tensor, seed: int = 0) -> ClassVerdict:
    """The verdict on one example x ((1, *shape) or (*shape); 8-bit pixels are dequantized with the noise of
    `seed`, as `Flow.bits_per_dim` does), from one pass through the flow."""
    _conditional(model)
    x = x.unsqueeze(0) if x.dim() == len(model.config.shape) else x
    with torch.no_grad():
        u = model.dequantize(x, seed) if model.config.preprocess and is_pixels(x) else x
        log_probs = model.class_log_probs(u)[0]
        marginal = model.bits_from_log_prob(model.marginal(log_probs[None]))[0]
        bits = model.bits_from_log_prob(log_probs)
    p = torch.softmax(log_probs, 0).cpu()
    answer, runner_up = torch.topk(p, 2).indices.tolist()
    return ClassVerdict(p, bits.cpu(), float(marginal), answer, runner_up)


def nearest_neighbour_vote(x: Tensor, train_x: Tensor, train_y: Tensor, k: int = 5, batch: int = 256) -> Tensor:
    """An independent judge of what class an image shows: the majority class of its k nearest training images in
    raw pixels (Euclidean; ties go to the nearest of the tied classes). x: (B, *shape), train_x (N, *shape), pixels
    0..255 or floats in [0, 1] (both are scaled to [0, 1]); -> (B,) int64. It knows nothing of any flow."""
    def flat(v: Tensor) -> Tensor:
        return v.flatten(1).float() / (1.0 if v.is_floating_point() else 255.0)

    reference, labels, votes = flat(train_x), train_y.long(), []
    for i in range(0, len(x), batch):
        nearest = torch.cdist(flat(x[i:i + batch]), reference).topk(k, largest=False).indices  # (b, k), nearest first
        near_labels = labels[nearest]
        counts = torch.zeros(len(near_labels), int(labels.max()) + 1).scatter_add_(
            1, near_labels, torch.ones_like(near_labels, dtype=torch.float))
        # break ties by the nearest neighbour among the tied classes: a small bonus by rank
        bonus = torch.zeros_like(counts).scatter_reduce_(1, near_labels, torch.linspace(0.5, 0.1, k).expand_as(
            near_labels).contiguous(), reduce="amax", include_self=False)
        votes.append((counts + bonus * (counts > 0)).argmax(1))
    return torch.cat(votes)
