"""Play/pause over the steps of a sequence: a slider that a fragment advances on a timer while playing."""
from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from ui.url_state import BIND


def player(key: str, n: int, label: str, draw: Callable[[int], None], seconds: float = 1.0) -> None:
    """A slider (widget key `key`) over steps 0..n-1 with step and play/pause buttons; `draw(i)` draws
    step i. Slider and drawing form one fragment, so playing reruns only them, once every `seconds`."""
    playing_key, tick_key = f"{key}_playing", f"{key}_tick"
    if st.session_state.get(key, 0) > n - 1:  # another model with fewer blocks
        st.session_state[key] = n - 1
    ticking = st.session_state.get(playing_key, False)

    def go(i: int) -> None:
        st.session_state[key] = max(0, min(n - 1, i))
        st.session_state[playing_key] = False

    def play_pause() -> None:
        playing = not st.session_state.get(playing_key, False)
        if playing and st.session_state.get(key, 0) >= n - 1:
            st.session_state[key] = 0  # play again from the start
        st.session_state[playing_key] = playing
        st.session_state[tick_key] = time.monotonic()

    @st.fragment(run_every=seconds if ticking else None)
    def view() -> None:
        playing = st.session_state.get(playing_key, False)
        if playing != ticking:
            st.rerun()  # starting or stopping the clock takes a full run
        # Advance on the timer's ticks only, not on clicks that rerun the fragment in between.
        if playing and time.monotonic() - st.session_state.get(tick_key, 0.0) >= 0.5 * seconds:
            st.session_state[key] = min(st.session_state.get(key, 0) + 1, n - 1)
            st.session_state[tick_key] = time.monotonic()
            st.session_state[playing_key] = st.session_state[key] < n - 1
        i = st.session_state.get(key, 0)
        buttons = st.columns([1, 1, 2.2, 1, 1, 12], vertical_alignment="bottom")
        buttons[0].button("", icon=":material/first_page:", key=f"{key}_first", on_click=go, args=(0,),
                          help="First step")
        buttons[1].button("", icon=":material/chevron_left:", key=f"{key}_prev", on_click=go, args=(i - 1,),
                          help="One step back")
        buttons[2].button("Pause" if playing else "Play", icon=f":material/{'pause' if playing else 'play_arrow'}:",
                          key=f"{key}_play", on_click=play_pause, type="primary", width="stretch",
                          help=f"Step through all {n} steps, one every {seconds:g} s")
        buttons[3].button("", icon=":material/chevron_right:", key=f"{key}_next", on_click=go, args=(i + 1,),
                          help="One step forward")
        buttons[4].button("", icon=":material/last_page:", key=f"{key}_last", on_click=go, args=(n - 1,),
                          help="Last step")
        buttons[5].slider(label, 0, n - 1, key=key, on_change=lambda: st.session_state.update({playing_key: False}),
                          bind=BIND)  # the step is in the URL (?<key>=), left out at step 0
        draw(st.session_state[key])

    view()
