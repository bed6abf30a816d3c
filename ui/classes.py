"""What the pages show of a class-conditional model: the flow as a classifier on one input (p(y | x) beside each
class's bits/dim, and the verdict in words), and which class an input is traced or encoded as."""
from __future__ import annotations

import streamlit as st
from torch import Tensor

from app.class_plots import verdict_figure
from flow.classes import which_class
from flow.model import Flow
from ui.digits import picked_label


def verdict(model: Flow, digit: Tensor, seed: int, key: str, name: str = "digit") -> None:
    """The bar charts of `flow.classes.which_class` for one input and its sentence; `key` names the chart."""
    v = which_class(model, digit, seed)
    st.plotly_chart(verdict_figure(v.probabilities, v.bits, v.answer), key=f"{key}_verdict",
                    config={"displayModeBar": False})
    st.markdown(f"**{v.sentence(name)}** Its marginal density, the mixture of all classes: "
                f"{v.marginal_bits:.3f} bits/dim.")


def own_class(model: Flow, key: str, digit: Tensor, seed: int) -> tuple[int, str]:
    """The class an input picked under `key` belongs to, and how that is known: a test digit's label, else (a
    drawing, an upload) the flow's own answer, p(y | x) at its highest."""
    label = picked_label(key)
    if label is not None and 0 <= label < model.num_classes:
        return label, "its label"
    return which_class(model, digit, seed).answer, "the flow's answer, p(y | x) at its highest"
