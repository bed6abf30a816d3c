"""The dequantization noise's seed, one value shared by every page: a digit's bits/dim depends on its
noise draw (`Flow.bits_per_dim`), so the Explorer and the Latent Playground must use the same one."""
from __future__ import annotations

import random

import streamlit as st

from ui.url_state import BIND

SHARED = "noise_seed"  # the value; each page's widget has a key of its own and copies it
LIMIT = 10**6
INPUT_WIDTH = 130  # px: six digits, and the +/- a number input drops at 120 or less


def noise_seed_input(key: str, container=st) -> int:
    """A number input for the seed and a "New noise" button beside it (below it where the two do not fit
    `container`'s width, on two lines in a column too narrow for one: never a cut label); returns the seed. Both write the shared value, so every page
    shows the same draw."""
    seed = st.session_state.setdefault(SHARED, 0)
    if st.session_state.get(key) != seed:  # another page (or the button) changed it
        st.session_state[key] = seed

    def typed() -> None:
        st.session_state[SHARED] = st.session_state[key]

    def draw_new() -> None:
        st.session_state[SHARED] = random.randrange(LIMIT)

    row = container.container(horizontal=True, vertical_alignment="bottom", gap="xsmall")
    row.number_input("Noise seed", 0, LIMIT - 1, key=key, step=1, on_change=typed, bind=BIND, width=INPUT_WIDTH,
                     help="Seed of the uniform dequantization noise n ~ U[0, 1)^D added to the 8-bit pixels (D = 784 for a digit). "
                          "The same digit and seed give the same bits/dim on every page and in "
                          "`python -m flow.evaluate --seed`.")
    row.button("New noise", icon=":material/casino:", key=f"{key}_new", on_click=draw_new, wrap=True,
               help="Draw another noise: the digit's bits/dim moves by a few hundredths")
    # The URL (`key` is its parameter) seeds the widget on a session's first run and on back/forward, with no
    # callback: what the widget holds is the seed.
    st.session_state[SHARED] = int(st.session_state[key])
    return int(st.session_state[SHARED])
