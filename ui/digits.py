"""An input widget any page can use: one of the model's test examples (MNIST's test digits, or a data file's
held-out images), and for MNIST-shaped models a drawing on a canvas or an uploaded picture."""
from __future__ import annotations

import random

import numpy as np
import streamlit as st
import torch
from streamlit_drawable_canvas import st_canvas
from torch import Tensor

from app.catalog import MNIST_SHAPE, ModelEntry
from app.images import ImageInputError, to_mnist_uint8
from flow.data import DATASETS, data_label, load_dataset, load_labels
from ui.url_state import BIND, NOT_IN_LINK

SOURCES = ("Test digit", "Draw", "Upload")
CANVAS_SIDE = 196  # 7x the 28-pixel digit: room to draw, a brush that ends up MNIST-thick
CLASS_WIDTH, INDEX_WIDTH, PREVIEW_WIDTH = 80, 130, 48  # px (over 120 a number input keeps its +/-)
_LABEL = "_{}_label"  # session state: the label of the test example a picker shows (`picked_label`)


@st.cache_data(max_entries=16, show_spinner=False)
def _convert(data: bytes, fit: bool | None) -> np.ndarray:
    """Decoding a big upload takes a while: do it once per file, not on every rerun."""
    return to_mnist_uint8(data, fit=fit).numpy()


@st.cache_resource(max_entries=8, show_spinner="Reading the test examples …")
def _examples(spec: str, version: float) -> tuple[Tensor, Tensor | None]:
    """A data set's test examples (uint8 (N, C, H, W)) and their labels (None where it has none), once per
    data file version (`version`: the checkpoint's, whose catalog entry vouches for the file), shared by every
    session."""
    return load_dataset(spec, "test"), load_labels(spec, "test")


def _test_example(key: str, default_class: str, default_index: int, spec: str,
                  version: float) -> tuple[Tensor, str]:
    images, labels = _examples(spec, version)
    classes = ["any", *map(str, sorted(set(labels.tolist())))] if labels is not None else ["any"]
    if default_class not in classes:  # a data set without that class: pickers apart by their index instead
        default_class = "any"
        st.session_state.setdefault(f"{key}_index", min(default_index, len(images) - 1))
    if st.session_state.get(f"{key}_class", default_class) not in classes:  # another data set's class
        del st.session_state[f"{key}_class"]  # the widget starts again at its default
    st.session_state.setdefault(f"{key}_index", 0)

    def indices() -> np.ndarray:
        picked = st.session_state.get(f"{key}_class", default_class)
        return np.arange(len(images)) if picked == "any" else np.flatnonzero(labels.numpy() == int(picked))

    def reset_index() -> None:
        st.session_state[f"{key}_index"] = 0

    def pick_random() -> None:
        st.session_state[f"{key}_index"] = random.randrange(len(indices()))

    # fixed widths in a wrapping row: side by side where they fit, the next one on a new line where not (two pickers
    # abreast on a 1024-pixel projector), never a cut value or label; the picture ends the row (see digit_input)
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="xsmall")
    if len(classes) > 1:  # a data file without labels has no classes to pick
        row.selectbox("Class", classes, classes.index(default_class), key=f"{key}_class", on_change=reset_index,
                      bind=BIND, width=CLASS_WIDTH)
    chosen = indices()
    if st.session_state[f"{key}_index"] >= len(chosen):  # another model's data set had more examples
        st.session_state[f"{key}_index"] = 0
    i = row.number_input(f"Index (of {len(chosen)})", 0, len(chosen) - 1, key=f"{key}_index", step=1,
                         bind=BIND, width=INDEX_WIDTH)
    row.button("", icon=":material/casino:", key=f"{key}_random", on_click=pick_random,
               help="A random test example of this class")  # icon only: a word would not fit two pickers abreast
    n = int(chosen[i])
    example = images[n:n + 1].clone()
    st.session_state[_LABEL.format(key)] = None if labels is None else int(labels[n])
    _preview(row, example)
    if spec == "mnist":
        label = int(labels[n])
        return example, f"MNIST test image #{n} ({'an' if label == 8 else 'a'} {label})"
    return example, (f"{data_label(spec)} test example #{n}" + (f" (class {int(labels[n])})" if labels is not None
                                                                  else ""))


def picked_label(key: str) -> int | None:
    """The class of the test example the picker under `key` shows (None for a drawing, an upload, or data without
    labels)."""
    return st.session_state.get(_LABEL.format(key)) if source_of(key) == SOURCES[0] else None


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


def own_pictures(entry: ModelEntry | None) -> bool:
    """Whether drawing and uploading are offered: they make 28x28 greyscale digits, so MNIST-shaped models only."""
    return entry is None or entry.shape == MNIST_SHAPE


def source_of(key: str, entry: ModelEntry | None = None) -> str:
    """The source the picker under `key` takes its input from: one of `SOURCES` (a test example for a model that
    takes no drawing, whatever the session last chose)."""
    source = st.session_state.get(f"{key}_source", SOURCES[0])
    return source if own_pictures(entry) else SOURCES[0]


def digit_input(key: str, label: str = "Digit", default_class: str = "any", entry: ModelEntry | None = None,
                default_index: int = 0) -> Tensor | None:
    """Draw the source picker in the current container; the chosen input as uint8 (1, C, H, W): (1, 1, 28, 28)
    for MNIST (`entry` None: the MNIST pages), else one of the test examples of `entry`'s data set.

    None while there is no input yet (nothing drawn or uploaded, or the upload is not a picture);
    the widget then says what to do. `key` prefixes every widget key, so a page can hold several; the source,
    class and index are in the URL under those keys (?<key>_class=3), the class only when not `default_class`.
    A data set without that class starts at test example `default_index` instead (several pickers on one page
    then start on different examples).
    """
    spec = "mnist" if entry is None else entry.data
    version = 0.0 if spec in DATASETS else entry.version  # a data file's: its checkpoint's (it vouches for it)
    with st.container(gap="xsmall"):  # one widget: its rows closer together than the page's
        if own_pictures(entry):
            source = st.radio(label, SOURCES, key=f"{key}_source", horizontal=True, bind=BIND)
        else:
            source = SOURCES[0]
            st.markdown(f"**{label}**")
            shape = "×".join(map(str, entry.shape[1:]))
            st.caption(f"A test image of {entry.data_name}: drawing and uploading make 28×28 digits, and this model "
                       f"takes {shape} images.")
        if source == SOURCES[0]:  # the picture at the end of the class and index row
            digit, caption = _test_example(key, default_class, default_index, spec, version)
        else:
            digit, caption = _drawn(key) if source == "Draw" else _uploaded(key)
            if digit is not None:
                _preview(st, digit)
        if digit is not None:
            st.caption("What the model sees: " + caption + ".")
        elif caption:
            st.caption(caption)
        if source != SOURCES[0]:
            st.caption(NOT_IN_LINK.format(what="canvas" if source == "Draw" else "upload box"))
    return digit
