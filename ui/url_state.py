"""View state in the URL, so that a reload, a bookmark, back/forward and a link sent to a student reopen a view.

Plain widgets use Streamlit's own binding, `bind=BIND` with a `key`: the key is the query parameter's name and
the widget's value its value (a label verbatim), left out of the URL while it is the widget's default. Streamlit
seeds the widget from the URL on a session's first run and on back/forward, ignores (and drops from the URL) a
value that does not parse or is out of range, and writes every change back, also those made through
st.session_state. What a widget cannot hold is kept here by hand: the model (a file path in the select box, its
catalog name in the URL), Compare's two models (a label is no stable name), and the numbers a page parses itself
(url_int: ASCII digits only). Drawn and uploaded digits never go into a URL: their source does, with a note.
"""
from __future__ import annotations

import re

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

BIND = "query-params"  # pass as bind= to a keyed widget
MODEL = "model"  # the model's catalog name (file stem or run folder name)
NOT_IN_LINK = ("A drawn or uploaded digit cannot be put in a link: the address keeps the source only, "
               "so a reload or a shared link opens an empty {what}.")


def url_decides(flag: str) -> bool:
    """True on a session's first run through this code (marked by session-state `flag`) and on back/forward:
    the times when what the URL says should replace the session's own value."""
    ctx = get_script_run_ctx()
    first = flag not in st.session_state
    st.session_state[flag] = True
    return first or bool(ctx is not None and ctx.is_history_navigation)


def whole_number(value: object, low: int, high: int) -> int | None:
    """`value` as an int in [low, high] if it is one, or the ASCII digits of one ("7"; not "²", "٣", "1e3",
    "-1", " 3" or "": str.isdigit accepts digits that int() rejects, and int() accepts blanks and other
    scripts); None otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value):
        number = int(value)
    else:
        return None
    return number if low <= number <= high else None


def url_int(param: str, low: int, high: int) -> int | None:
    """Query parameter `param` as a whole number in [low, high]; None (the caller keeps its default) when it
    is absent or anything else. Every number the app reads from its URL by hand goes through here."""
    return whole_number(st.query_params.get(param), low, high)


def name_from_url(param: str, names: dict[str, str], what: str = "the model") -> str | None:
    """The option that query parameter `param` names (names: URL value, a catalog name -> option); None when
    it is absent, and None with a warning that names it when no option has that name (a stale or mistyped
    link: the caller keeps its default)."""
    value = st.query_params.get(param)
    if not isinstance(value, str):
        return None
    if value not in names:
        st.warning(f"The link names {what} **{value}**, which is not among the usable ones here (deleted, "
                   "renamed or broken?): showing the default instead.")
        return None
    return names[value]
