"""Classroom mode (ui.classroom): the rule on addresses and keys, and the Train page as a student's browser sees it.
AppTest has no client address of its own: the page tests replace ui.classroom.client_address (the one place that
reads st.context.ip_address). The real address, through a real server, is tested in tests/browser/test_classroom_browser.py."""
import json
import time

import pytest

from app import jobs
from flow.checkpoint import save_checkpoint
from flow.model import build_model
from tests.app_helpers import LAUNCH, app, fill, texts
from ui import classroom


@pytest.mark.parametrize("address, local", [
    (None, True),  # Streamlit 1.67's st.context.ip_address for 127.0.0.1 and ::1
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True),
    (object(), True),  # no browser connection at all (AppTest, bare mode): the host's own process
    ("192.0.2.2", False), ("10.0.0.7", False), ("fd00::2", False), ("fe80::1%eth0", False), ("::ffff:10.0.0.1", False),
    ("", False), ("localhost", False), ("not an address", False),
])
def test_only_loopback_addresses_are_the_host(address, local):
    assert classroom.is_loopback(address) is local


KEY = "s3cret-chalk1"  # 13 characters


@pytest.mark.parametrize("entered, configured, ok", [
    (KEY, KEY, True), (f" {KEY} ", KEY, True),
    (KEY, None, False), ("", None, False), ("", "", False), ("  ", "  ", False), (None, KEY, False),
    (KEY.upper(), KEY, False), (KEY[:-1], KEY, False), ("", KEY, False),
    ("x", "x", False), ("chalk-board", "chalk-board", False), (" chalk-board ", " chalk-board ", False),  # 1, 11
    ("chalk-boards", "chalk-boards", True),  # 12 characters: the shortest key that is used
])
def test_a_teacher_key_matches_only_a_configured_non_empty_key(entered, configured, ok):
    assert classroom.key_matches(entered, configured) is ok
    assert classroom.allowed("192.0.2.2", entered, configured) is ok
    assert classroom.allowed(None, entered, configured)  # the host needs no key


def test_the_key_comes_from_the_environment_first(monkeypatch):
    monkeypatch.setenv(classroom.KEY_ENV, "  from-env ")
    assert classroom.teacher_key() == "from-env"
    monkeypatch.setattr(classroom.st, "secrets", {"teacher_key": " from-secrets "})
    assert classroom.teacher_key() == "from-env"
    monkeypatch.setenv(classroom.KEY_ENV, " ")  # empty: Streamlit secrets decide
    assert classroom.teacher_key() == "from-secrets"
    monkeypatch.setattr(classroom.st, "secrets", {"teacher_key": ""})
    assert classroom.teacher_key() is None


def _finished_run(root, name: str) -> None:
    save_checkpoint(build_model("toy-2d"), root / name / "checkpoint.safetensors", preset="toy-2d", data="moons",
                    epoch=2, step=16, test_bpd=2.5, epochs_planned=2)
    (root / name / "metrics.jsonl").write_text(json.dumps({"kind": "epoch", "step": 16, "epoch": 2.0, "train_bpd": None,
                                                           "test_bpd": 2.5, "images_per_s": 800.0, "wall_time": 2.0}) + "\n")
    (root / name / "status.json").write_text(json.dumps({"state": "finished", "message": "finished", "pid": 1,
                                                         "updated": time.time()}))


class Clock:
    """A monotonic clock the test moves by hand."""
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_wrong_keys_lock_an_address_out_for_a_minute_and_no_other():
    clock = Clock()
    guard = classroom.Throttle(clock=clock)
    for _ in range(4):
        assert guard.wrong("192.0.2.9") == 0 and guard.wait("192.0.2.9") == 0
    assert guard.wrong("192.0.2.9") == 60 and guard.wait("192.0.2.9") == 60
    assert guard.wait("192.0.2.10") == 0  # another address: not locked
    clock.now += 59.5
    assert guard.wait("192.0.2.9") == 0.5
    clock.now += 0.5
    assert guard.wait("192.0.2.9") == 0  # expired; a fresh count of five starts
    assert guard.wrong("192.0.2.9") == 0
    guard.right("192.0.2.9")  # the right key clears the count
    assert all(guard.wrong("192.0.2.9") == 0 for _ in range(4))


def test_the_throttle_remembers_a_bounded_number_of_addresses():
    guard = classroom.Throttle(max_wrong=1, max_clients=3, clock=Clock())
    for i in range(5):
        guard.wrong(f"10.0.0.{i}")
    assert len(guard._clients) == 3 and guard.wait("10.0.0.4") == 60 and guard.wait("10.0.0.0") == 0


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """A fresh server-wide throttle on a hand-moved clock for the page tests (the real one outlives each test)."""
    clock = Clock()
    monkeypatch.setattr(classroom, "GUESSES", classroom.Throttle(clock=clock))
    return clock


@pytest.fixture
def student(monkeypatch, clock):
    """The Train page's client is another machine on the classroom network (until set back with `student(None)`)."""
    monkeypatch.delenv(classroom.KEY_ENV, raising=False)
    where = {"address": "192.0.2.9"}
    monkeypatch.setattr(classroom, "client_address", lambda: where["address"])
    return lambda address: where.update(address=address)


@pytest.mark.integration
def test_a_student_sees_the_runs_read_only_and_is_told_to_ask_the_teacher(runs_root, student):
    _finished_run(runs_root, "lesson")
    at = app("app_pages/train.py")
    assert not at.exception
    assert "Classroom mode" in texts(at.info) and "ask the teacher" in texts(at.info)
    assert not [b for b in at.button if b.key in (LAUNCH, "stop", "delete", "resume")]
    assert not [t for t in at.text_input if t.key.startswith("teacher_key")]  # no key configured: no field
    assert list(at.dataframe[0].value.run) == ["lesson"] and len(at.get("plotly_chart")) == 1


@pytest.mark.integration
def test_the_teacher_key_unlocks_this_session_only_and_a_wrong_one_does_not(runs_root, student, monkeypatch):
    _finished_run(runs_root, "lesson")
    monkeypatch.setenv(classroom.KEY_ENV, "chalk-and-board")
    at = app("app_pages/train.py")
    at.text_input(key="teacher_key_train").input("chalk-and-board!").run()
    assert "not the teacher key" in texts(at.error) and not [b for b in at.button if b.key == "delete"]
    at.text_input(key="teacher_key_train").input("chalk-and-board").run()
    assert not at.error and "Teacher key accepted" in texts(at.caption)
    assert [b.key for b in at.button if b.key in (LAUNCH, "delete")] == [LAUNCH, "delete"]
    assert at.text_input(key="f_name")  # the New-run form
    other = app("app_pages/train.py")  # another student's session: still locked
    assert not [b for b in other.button if b.key in (LAUNCH, "delete")]


@pytest.mark.integration
def test_a_rerun_that_asks_to_act_is_refused_once_the_client_may_not(runs_root, student):
    """The page was drawn for a client that could act; the press arrives from one that cannot (a crafted or stale
    rerun): nothing is launched, nothing deleted."""
    _finished_run(runs_root, "lesson")
    student(None)  # drawn for the host
    at = app("app_pages/train.py")
    at.button(key="delete").click().run()
    assert "cannot be undone" in texts(at.markdown)
    student("192.0.2.9")
    at.button(key="delete_confirm").click().run()
    assert (runs_root / "lesson").is_dir() and not at.exception
    student(None)
    at = app("app_pages/train.py")
    student("192.0.2.9")
    fill(at, preset="toy-2d", data="moons", name="sneaky")
    assert not (runs_root / "sneaky").exists() and not at.success and jobs.get_run("lesson").state == "finished"


def _enter(at, key: str):
    return at.text_input(key="teacher_key_train").input(key).run()


@pytest.mark.integration
def test_wrong_keys_lock_the_address_out_across_sessions_until_the_lock_expires(runs_root, student, clock, monkeypatch):
    monkeypatch.setenv(classroom.KEY_ENV, "chalk-and-board")
    at = app("app_pages/train.py")
    for i in range(5):
        _enter(at, f"guess-number-{i}")
    assert "Too many wrong keys" in texts(at.error) and "60 s" in texts(at.error)
    _enter(at, "chalk-and-board")  # the right key, while locked out: refused
    assert "Too many wrong keys" in texts(at.error) and not [b for b in at.button if b.key == LAUNCH]
    reloaded = app("app_pages/train.py")  # a reload or a new tab: a new session from the same address
    clock.now += 30
    _enter(reloaded, "chalk-and-board")
    assert "try again in 30 s" in texts(reloaded.error) and not [b for b in reloaded.button if b.key == LAUNCH]
    student("192.0.2.10")  # another student's laptop is not locked
    other = _enter(app("app_pages/train.py"), "chalk-and-board")
    assert "Teacher key accepted" in texts(other.caption)
    student("192.0.2.9")
    clock.now += 30  # the minute is over
    _enter(reloaded, "chalk-and-board")
    assert not reloaded.error and [b.key for b in reloaded.button if b.key == LAUNCH] == [LAUNCH]


@pytest.mark.integration
@pytest.mark.parametrize("key", ["x", "chalk-board"])  # 1 and 11 characters
def test_a_short_key_is_not_used_and_the_host_is_told_how_to_make_a_good_one(runs_root, student, monkeypatch, key):
    monkeypatch.setenv(classroom.KEY_ENV, key)
    at = app("app_pages/train.py")
    assert "No usable teacher key" in texts(at.info) and not [t for t in at.text_input if t.key.startswith("teacher")]
    student(None)  # the host
    host = app("app_pages/train.py")
    assert "shorter than 12 characters" in texts(host.warning) and "secrets.token_urlsafe(16)" in texts(host.warning)
