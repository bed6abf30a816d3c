"""View state in the URL, so that a reload, a bookmark, back/forward and a link sent to a student reopen a view.

Plain widgets use Streamlit's own binding, `bind=BIND` with a `key`: the key is the query parameter's name and
the widget's value its value (a label verbatim), left out of the URL while it is the widget's default. Streamlit
seeds the widget from the URL on a session's first run and on back/forward, ignores (and drops from the URL) a
value that does not parse or is out of range, and writes every change back, also those made through
st.session_state. What a widget cannot hold is kept here by hand: the model (a file path in the select box, its
catalog name in the URL). Drawn and uploaded digits never go into a URL: their source does, with a note.
"""
from __future__ import annotations

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


def wanted(param: str, options: dict[str, str]) -> str | None:
    """The option that query parameter `param` names (options: URL value -> option), or None when it is
    absent or names none of them (a stale or mistyped link: the caller keeps its default)."""
    value = st.query_params.get(param)
    return options.get(value) if isinstance(value, str) else None
