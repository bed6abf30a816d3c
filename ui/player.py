"""A server-side stepper for the views that need the server for each step (formulas, audits, autograd);
playing runs in the browser (`app.explore_plots`' animations)."""
from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from ui.url_state import BIND


def stepper(key: str, n: int, label: str, draw: Callable[[int], None]) -> None:
    """A slider (widget key `key`, kept in the URL) over steps 0..n-1 with first/back/next/last buttons;
    `draw(i)` draws step i. Slider and drawing form one fragment: a step reruns only them."""
    if st.session_state.get(key, 0) > n - 1:  # another model with fewer blocks
        st.session_state[key] = n - 1

    def go(i: int) -> None:
        st.session_state[key] = max(0, min(n - 1, i))

    @st.fragment
    def view() -> None:
        i = st.session_state.get(key, 0)
        buttons = st.columns([1, 1, 1, 1, 14], vertical_alignment="bottom")
        for col, (icon, name, to, tip) in zip(buttons, [("first_page", "first", 0, "First step"),
                                                        ("chevron_left", "prev", i - 1, "One step back"),
                                                        ("chevron_right", "next", i + 1, "One step forward"),
                                                        ("last_page", "last", n - 1, "Last step")]):
            col.button("", icon=f":material/{icon}:", key=f"{key}_{name}", on_click=go, args=(to,), help=tip)
        buttons[4].slider(label, 0, n - 1, key=key, bind=BIND)  # the step is in the URL (?<key>=), left out at 0
        draw(st.session_state[key])

    view()
