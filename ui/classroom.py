"""Classroom mode, safe by default: who may launch, stop, resume or delete training runs.

The rule: a browser on the host machine (a loopback client) may, and so may a session that entered the teacher
key (environment variable REALNVP_TEACHER_KEY, or `teacher_key` in .streamlit/secrets.toml). Everyone else sees
the runs read-only and uses every exploring page. The pages ask `may_control()` twice: to decide what to offer,
and again at the moment of acting, so that a crafted or stale rerun cannot act.

A key shorter than MIN_KEY_LENGTH is not used at all (the host's Train page says how to set a good one), and wrong
guesses are throttled per client address by one server-wide `Throttle` (GUESSES), which a reload or a new tab
does not reset."""
from __future__ import annotations

import hmac
import ipaddress
import math
import os
import threading
import time
from collections import OrderedDict
from typing import Callable

import streamlit as st

KEY_ENV = "REALNVP_TEACHER_KEY"
SECRET = "teacher_key"
ACCEPTED = "classroom_key"  # the key this session entered and that matched; kept for this session only
WRONG = "classroom_wrong"   # what the last entry said (a wrong key, a lock-out), for this session only
MIN_KEY_LENGTH = 12         # shorter keys are guessable by hand: refused as configuration
MAKE_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(16))"'


class Throttle:
    """Wrong teacher keys per client address: after `max_wrong` in a row that address is locked out for
    `lockout_s` seconds, even for the right key. Thread-safe (every session's script thread shares it) and bounded:
    at most `max_clients` addresses are remembered, the least recently seen forgotten first. `clock` (seconds,
    monotonic) is injectable so that expiry is testable without sleeping."""

    def __init__(self, max_wrong: int = 5, lockout_s: float = 60.0, max_clients: int = 4096,
                 clock: Callable[[], float] = time.monotonic):
        self.max_wrong, self.lockout_s, self.max_clients, self.clock = max_wrong, lockout_s, max_clients, clock
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (wrong in a row, locked until)

    def wait(self, client: str) -> float:
        """Seconds this client must still wait before a key is checked again; 0 when it may try."""
        with self._lock:
            _, until = self._clients.get(client, (0, 0.0))
            return max(0.0, until - self.clock())

    def wrong(self, client: str) -> float:
        """Count a wrong key; returns the lock-out it starts (seconds), 0 when the client may still try."""
        with self._lock:
            count, until = self._clients.pop(client, (0, 0.0))
            count += 1
            if count >= self.max_wrong:
                count, until = 0, self.clock() + self.lockout_s
            self._clients[client] = (count, until)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            return max(0.0, until - self.clock())

    def right(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


GUESSES = Throttle()  # one per server process: every session and tab of every client goes through it


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


def usable(configured: str | None) -> bool:
    """Whether a configured key is long enough to be used at all (MIN_KEY_LENGTH characters, spaces not counted)."""
    return configured is not None and len(configured.strip()) >= MIN_KEY_LENGTH


def key_matches(entered: str | None, configured: str | None) -> bool:
    """A teacher key in constant time; no key configured, or one shorter than MIN_KEY_LENGTH, never matches."""
    if not usable(configured) or not entered:
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


def _locked_out(seconds: float) -> str:
    return (f"Too many wrong keys from this computer: try again in {math.ceil(seconds)} s "
            "(the right key too is refused until then).")


def _check_entered(widget: str) -> None:
    entered = st.session_state.get(widget, "")
    st.session_state[widget] = ""  # the key does not stay in the field
    st.session_state.pop(ACCEPTED, None)
    st.session_state.pop(WRONG, None)
    if not entered:
        return
    client = str(client_address())
    wait = GUESSES.wait(client)
    if wait > 0:  # checked before the key: a locked-out client learns nothing, right key or wrong
        st.session_state[WRONG] = _locked_out(wait)
    elif key_matches(entered, teacher_key()):
        st.session_state[ACCEPTED] = entered
        GUESSES.right(client)
    else:
        wait = GUESSES.wrong(client)
        st.session_state[WRONG] = "That is not the teacher key." + (" " + _locked_out(wait) if wait > 0 else "")


def notice(where: str, what: str = "launch, stop, resume or delete training runs") -> bool:
    """For a client that may not act: why, and a field for the teacher key. Returns may_control()."""
    key = teacher_key()
    if may_control():
        if not is_host():
            st.caption(":material/key: Teacher key accepted: this session can launch, stop, resume and delete runs.")
        elif key is not None and not usable(key) and where == "train":
            st.warning(f"The teacher key set on this server is shorter than {MIN_KEY_LENGTH} characters, so it is not "
                       "used: no other computer can unlock this page. Make a good one with "
                       f"`{MAKE_KEY}` and set it in {KEY_ENV} or as `{SECRET}` in .streamlit/secrets.toml.",
                       icon=":material/warning:")
        return True
    configured = usable(key)
    st.info(f"**Classroom mode**: only the computer running the app, or someone with the teacher key, can {what}. "
            "You can watch every run and its live charts here and use all the exploring pages."
            + ("" if configured else " No usable teacher key is set on this server: ask the teacher."),
            icon=":material/lock:")
    if configured:
        widget = f"teacher_key_{where}"
        st.text_input("Teacher key", type="password", key=widget, on_change=_check_entered, args=(widget,),
                      placeholder="press Enter to unlock", help="Set by the teacher in the environment "
                      f"({KEY_ENV}) or in .streamlit/secrets.toml ({SECRET}).")
        if st.session_state.get(WRONG):
            st.error(st.session_state[WRONG], icon=":material/block:")
    return False


def refuse() -> None:
    """What a refused action says (a rerun that asked for an action this session may not take)."""
    st.error("Only the computer running the app, or someone with the teacher key, can do that.", icon=":material/lock:")
