"""The model picker every page shares (drawn by streamlit_app.py) and the cached model behind it."""
from __future__ import annotations

import streamlit as st

from app.catalog import ModelEntry, list_models
from flow.checkpoint import CheckpointError, load_checkpoint
from flow.model import Flow
from ui.url_state import MODEL, name_from_url, url_decides

KEY = "model_path"


@st.cache_resource(max_entries=6, show_spinner="Loading model…")
def _load(path: str, version: float) -> Flow:
    """One copy per checkpoint file version, shared by all sessions; a rewritten file is a new key."""
    return load_checkpoint(path)


def model_picker() -> None:
    """Sidebar select box of usable models; unusable checkpoint files are listed with their reason."""
    entries = list_models()
    usable = [e for e in entries if e.error is None]
    paths = [str(e.path) for e in usable]
    if url_decides("model_from_url"):  # ?model=<name>: a bookmark or a shared link; an unknown one is named
        by_name = {}
        for e in usable:  # the first of a name wins, as in the list
            by_name.setdefault(e.name, str(e.path))
        st.session_state[KEY] = name_from_url(MODEL, by_name) or st.session_state.get(KEY)
    if st.session_state.get(KEY) not in paths:
        st.session_state[KEY] = paths[0] if paths else None
    with st.sidebar:
        if not usable:
            st.warning("No usable model yet: train one on the Train page.")
        else:
            by_path = {str(e.path): e for e in usable}
            st.selectbox("Model (test bits/dim)", paths, key=KEY, format_func=lambda p: by_path[p].label,
                         help="Shipped checkpoints and the latest checkpoint of every training run, each with "
                              "its bits/dim on its data set's test examples (MNIST's test digits, a 2-D set's "
                              "test points, or the held-out part of a data file).")
            chosen = by_path[st.session_state[KEY]]
            st.caption(chosen.details)  # the whole name too: a long run name does not fit the box
            # always in the URL, default or not: which model is first changes as runs come and go
            st.query_params[MODEL] = chosen.name
        broken = [e for e in entries if e.error is not None]
        if broken:
            with st.expander(f"{len(broken)} unusable checkpoint file(s)"):
                for e in broken:
                    st.caption(f"**{e.path.name}** ({e.source}): {e.error}")


def current_model(needs: str = "pictures") -> tuple[Flow, ModelEntry] | None:
    """The model chosen in the sidebar, loaded once and cached; None (with one message) if there is none, or
    if it is not what the page `needs`: "pictures" (greyscale images of any size or 2-D points: what the pages
    can draw) or "mnist" (a model of MNIST digits: the page runs MNIST's test digits through it)."""
    path = st.session_state.get(KEY)
    entry = next((e for e in list_models() if str(e.path) == path and e.error is None), None)
    if entry is None:
        st.info("Choose a model in the sidebar (or train one on the Train page).")
        return None
    if problem := unshowable(entry, needs):
        st.info(problem)
        return None
    try:
        return _load(str(entry.path), entry.version), entry
    except CheckpointError as e:
        st.error(f"{e}. Pick another model in the sidebar.")
        return None


def unshowable(entry: ModelEntry, needs: str) -> str | None:
    """Why a page that `needs` "pictures" or "mnist" (see `current_model`) cannot show this model, in one line
    for an st.info; None when it can."""
    name, shape = f"**{entry.name}**", "×".join(map(str, entry.shape))
    if entry.kind == "colour":
        return (f"{name} is a colour model ({shape}): the pages show greyscale models. Colour ones train and score "
                "on the command line: `python -m flow.train --data FILE`, `python -m flow.evaluate --checkpoint ...`.")
    if entry.kind == "vectors":
        return (f"{name} models {shape}-D points: the pages draw greyscale images and 2-D points. Score it on the "
                "command line: `python -m flow.evaluate --checkpoint ...`.")
    if needs == "mnist" and not entry.is_image_model:
        return (f"This page runs MNIST's test digits through the model: pick an MNIST model in the sidebar "
                f"({name} was trained on {entry.data_name}).")
    return None


def load(entry: ModelEntry) -> Flow:
    """A catalog entry's model, from the same shared cache as the sidebar's choice."""
    return _load(str(entry.path), entry.version)
