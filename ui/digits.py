"""A digit-source widget any page can use: a test digit, a drawing on a canvas, or an uploaded picture."""
from __future__ import annotations

import random

import numpy as np
import streamlit as st
import torch
from streamlit_drawable_canvas import st_canvas
from torch import Tensor

from flow.data import load_mnist
from app.images import ImageInputError, to_mnist_uint8
from ui.url_state import BIND, NOT_IN_LINK

SOURCES = ("Test digit", "Draw", "Upload")
CANVAS_SIDE = 196  # 7x the 28-pixel digit: room to draw, a brush that ends up MNIST-thick
CLASS_WIDTH, INDEX_WIDTH, PREVIEW_WIDTH = 80, 130, 48  # px (over 120 a number input keeps its +/-)


@st.cache_data(max_entries=16, show_spinner=False)
def _convert(data: bytes, fit: bool | None) -> np.ndarray:
    """Decoding a big upload takes a while: do it once per file, not on every rerun."""
    return to_mnist_uint8(data, fit=fit).numpy()


def _test_indices(digit_class: str) -> np.ndarray:
    labels = load_mnist("test")[1].numpy()
    return np.arange(len(labels)) if digit_class == "any" else np.flatnonzero(labels == int(digit_class))


def _test_digit(key: str, default_class: str) -> tuple[Tensor, str]:
    st.session_state.setdefault(f"{key}_index", 0)

    def reset_index() -> None:
        st.session_state[f"{key}_index"] = 0

    def pick_random() -> None:
        n = len(_test_indices(st.session_state[f"{key}_class"]))
        st.session_state[f"{key}_index"] = random.randrange(n)

    # fixed widths in a wrapping row: side by side where they fit, the next one on a new line where not (two pickers
    # abreast on a 1024-pixel projector), never a cut value or label; the picture ends the row (see digit_input)
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="xsmall")
    classes = ["any", *map(str, range(10))]
    digit_class = row.selectbox("Class", classes, classes.index(default_class), key=f"{key}_class",
                                on_change=reset_index, bind=BIND, width=CLASS_WIDTH)
    indices = _test_indices(digit_class)
    i = row.number_input(f"Index (of {len(indices)})", 0, len(indices) - 1, key=f"{key}_index", step=1,
                         bind=BIND, width=INDEX_WIDTH)
    row.button("", icon=":material/casino:", key=f"{key}_random", on_click=pick_random,
               help="A random test digit of this class")  # icon only: a word would not fit two pickers abreast
    images, labels = load_mnist("test")
    n = int(indices[i])
    digit = images[n].view(1, 1, 28, 28).clone()
    _preview(row, digit)
    return digit, f"MNIST test image #{n} ({'an' if int(labels[n]) == 8 else 'a'} {int(labels[n])})"


def _preview(container, digit: Tensor) -> None:
    container.image(digit[0, 0].numpy(), width=PREVIEW_WIDTH)


def _drawn(key: str) -> tuple[Tensor | None, str]:
    st.space("medium")  # the canvas's toolbar floats above it
    canvas = st_canvas(stroke_width=18, stroke_color="#FFFFFF", background_color="#000000",
                       width=CANVAS_SIDE, height=CANVAS_SIDE, return_image_data=True, key=f"{key}_canvas")
    png = canvas.image_bytes
    digit = torch.from_numpy(_convert(png, True)) if png else None
    if digit is None or digit.max() == 0:
        return None, "Draw a digit on the black square (white ink), then release the mouse."
    return digit, "your drawing, cropped and centred like MNIST"


def _uploaded(key: str) -> tuple[Tensor | None, str]:
    file = st.file_uploader("Picture of a digit", key=f"{key}_upload",
                            help="PNG, JPEG, GIF, BMP, WebP or TIFF. Dark-on-light pictures are inverted "
                                 "to MNIST's white-on-black; larger pictures are cropped to the digit and centred.")
    if file is None:
        return None, "Upload a picture of a single digit."
    try:
        return torch.from_numpy(_convert(file.getvalue(), None)), f"{file.name}, converted to 28x28 grayscale"
    except ImageInputError as e:
        st.error(f"**{file.name}**: {e}")
        return None, ""


def digit_input(key: str, label: str = "Digit", default_class: str = "any") -> Tensor | None:
    """Draw the source picker in the current container; the chosen digit as uint8 (1, 1, 28, 28).

    None while there is no digit yet (nothing drawn or uploaded, or the upload is not a picture);
    the widget then says what to do. `key` prefixes every widget key, so a page can hold several; the source,
    class and index are in the URL under those keys (?<key>_class=3), the class only when not `default_class`.
    """
    with st.container(gap="xsmall"):  # one widget: its rows closer together than the page's
        source = st.radio(label, SOURCES, key=f"{key}_source", horizontal=True, bind=BIND)
        if source == "Test digit":  # the picture at the end of the class and index row
            digit, caption = _test_digit(key, default_class)
        else:
            digit, caption = _drawn(key) if source == "Draw" else _uploaded(key)
            if digit is not None:
                _preview(st, digit)
        if digit is not None:
            st.caption("What the model sees: " + caption + ".")
        elif caption:
            st.caption(caption)
        if source != "Test digit":
            st.caption(NOT_IN_LINK.format(what="canvas" if source == "Draw" else "upload box"))
    return digit
