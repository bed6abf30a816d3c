"""Classroom mode, safe by default: who may launch, stop, resume or delete training runs.

The rule: a browser on the host machine (a loopback client) may, and so may a session that entered the teacher
key (environment variable REALNVP_TEACHER_KEY, or `teacher_key` in .streamlit/secrets.toml). Everyone else sees
the runs read-only and uses every exploring page. The pages ask `may_control()` twice: to decide what to offer,
and again at the moment of acting, so that a crafted or stale rerun cannot act."""
from __future__ import annotations

import hmac
import ipaddress
import os

import streamlit as st

KEY_ENV = "REALNVP_TEACHER_KEY"
SECRET = "teacher_key"
ACCEPTED = "classroom_key"  # the key this session entered and that matched; kept for this session only


def is_loopback(address: object) -> bool:
    """Whether a client address (as `st.context.ip_address` gives it) is this machine. Streamlit 1.67 gives None
    for 127.0.0.1 and ::1; a session without a browser connection (AppTest, bare mode) gives something that is
    not a string: it runs in the host's own process, so it counts as local. Anything unparseable is not."""
    if address is None or not isinstance(address, str):
        return True
    try:
        ip = ipaddress.ip_address(address.split("%")[0])  # fe80::1%eth0: drop the zone
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def key_matches(entered: str | None, configured: str | None) -> bool:
    """A teacher key in constant time; no key configured, or an empty one, never matches."""
    if not configured or not configured.strip() or not entered:
        return False
    return hmac.compare_digest(entered.strip().encode(), configured.strip().encode())


def allowed(address: object, entered: str | None, configured: str | None) -> bool:
    """The whole rule, without Streamlit: a loopback client, or the right teacher key."""
    return is_loopback(address) or key_matches(entered, configured)


def teacher_key() -> str | None:
    """The configured key: the environment variable first, then Streamlit secrets; None when neither is set."""
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        return key
    try:
        key = st.secrets.get(SECRET)
    except (FileNotFoundError, OSError, ValueError):  # no secrets.toml (or an unreadable one)
        return None
    return (str(key).strip() or None) if key is not None else None


def client_address() -> object:
    return st.context.ip_address


def is_host() -> bool:
    return is_loopback(client_address())


def may_control() -> bool:
    """Whether this session may launch, stop, resume and delete runs (asked again at every action)."""
    return allowed(client_address(), st.session_state.get(ACCEPTED), teacher_key())


def _check_entered(widget: str) -> None:
    entered = st.session_state.get(widget, "")
    if key_matches(entered, teacher_key()):
        st.session_state[ACCEPTED] = entered
        st.session_state.pop("classroom_wrong", None)
    else:
        st.session_state.pop(ACCEPTED, None)
        st.session_state["classroom_wrong"] = bool(entered)
    st.session_state[widget] = ""  # the key does not stay in the field


def notice(where: str, what: str = "launch, stop, resume or delete training runs") -> bool:
    """For a client that may not act: why, and a field for the teacher key. Returns may_control()."""
    if may_control():
        if not is_host():
            st.caption("🔑 Teacher key accepted: this session can launch, stop, resume and delete runs.")
        return True
    configured = teacher_key() is not None
    st.info(f"**Classroom mode**: only the computer running the app, or someone with the teacher key, can {what}. "
            "You can watch every run and its live charts here and use all the exploring pages."
            + ("" if configured else " No teacher key is set on this server: ask the teacher."), icon="🔒")
    if configured:
        widget = f"teacher_key_{where}"
        st.text_input("Teacher key", type="password", key=widget, on_change=_check_entered, args=(widget,),
                      placeholder="press Enter to unlock", help="Set by the teacher in the environment "
                      f"({KEY_ENV}) or in .streamlit/secrets.toml ({SECRET}).")
        if st.session_state.get("classroom_wrong"):
            st.error("That is not the teacher key.", icon="🚫")
    return False


def refuse() -> None:
    """What a refused action says (a rerun that asked for an action this session may not take)."""
    st.error("Only the computer running the app, or someone with the teacher key, can do that.", icon="🔒")
