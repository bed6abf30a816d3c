"""Classroom mode in a real browser on another machine's address: a student watches runs but cannot launch, stop or
delete them; the same browser can once the teacher key is entered.

How the client address is simulated (see the classroom_server fixture): the server runs in a network namespace the
fixture makes, on one end of a veth pair (10.213.N.2), and Chromium opens http://10.213.N.2:PORT from this machine,
so the WebSocket's peer address, which Streamlit reports as st.context.ip_address, is 10.213.N.1 and not loopback:
exactly what a student's laptop on the classroom network looks like to the app (only its number differs)."""
import json
import time

from playwright.sync_api import expect

from flow.checkpoint import save_checkpoint
from flow.model import build_model
from tests.browser.helpers import TEACHER_KEY, ForwardingProxy, choose, open_page, screenshot, settle


def _finished_run(root, name: str) -> None:
    save_checkpoint(build_model("toy-2d"), root / name / "checkpoint.safetensors", preset="toy-2d", data="moons",
                    epoch=2, step=16, test_bpd=2.5, epochs_planned=2)
    (root / name / "metrics.jsonl").write_text("".join(json.dumps(
        {"kind": "epoch", "step": 8 * e, "epoch": float(e), "train_bpd": None, "test_bpd": 2.7 - e / 10,
         "images_per_s": 800.0, "wall_time": 2.0 * e}) + "\n" for e in (1, 2)))
    (root / name / "status.json").write_text(json.dumps({"state": "finished", "message": "finished", "pid": 1,
                                                         "updated": time.time()}))


def _enter_key(page, key: str) -> None:
    field = page.locator(".st-key-teacher_key_train input")
    field.fill(key)
    field.press("Enter")
    settle(page)


def _no_controls(page) -> None:
    main = page.get_by_test_id("stMain")
    for name in ("Launch", "Stop", "Delete", "Resume"):
        expect(main.get_by_role("button", name=name)).to_have_count(0)


def test_a_student_cannot_launch_stop_or_delete_and_can_with_the_teacher_key(classroom_server, new_page):
    assert classroom_server.url.startswith("http://10.213.")
    _finished_run(classroom_server.runs, "lesson")
    student, teacher = new_page(), new_page()  # two browser contexts, both from 10.213.N.1: neither is the host

    open_page(student, classroom_server, "train?run=lesson", "Train")
    main = student.get_by_test_id("stMain")
    expect(main.get_by_test_id("stAlert").first).to_contain_text("Classroom mode")
    expect(main).to_contain_text("lesson: finished")  # the run, its chart and the list, read-only
    expect(main.locator(".st-key-live_chart .js-plotly-plot")).to_have_count(1, timeout=60_000)
    _no_controls(student)
    _enter_key(student, "chalk")  # a wrong key unlocks nothing
    expect(main.get_by_text("That is not the teacher key.")).to_be_visible()
    _no_controls(student)
    screenshot(student, "classroom-student")

    # the teacher, on a laptop of the same network, enters the key and launches a run
    open_page(teacher, classroom_server, "train", "Train")
    _no_controls(teacher)
    _enter_key(teacher, TEACHER_KEY)
    expect(teacher.get_by_text("Teacher key accepted")).to_be_visible()
    teacher.get_by_text("New run").click()
    choose(teacher, "f_preset", "toy-2d")
    choose(teacher, "f_data", "moons (2-D)")
    for key, value in {"f_name": "demo", "f_epochs": 1000, "f_batch_size": 64, "f_limit_train": 512,
                       "f_limit_test": 256}.items():
        teacher.locator(f".st-key-{key} input").fill(str(value))
    teacher.get_by_role("button", name="Launch").click()
    expect(teacher.get_by_test_id("stMain")).to_contain_text("demo: running", timeout=60_000)

    # the student sees it train, and cannot stop it
    student.goto(f"{classroom_server.url}/train?run=demo")
    expect(main).to_contain_text("demo: running", timeout=60_000)
    _no_controls(student)

    # the teacher stops it and deletes it
    teacher.locator(".st-key-stop").get_by_role("button", name="Stop").click()
    expect(teacher.get_by_test_id("stMain")).to_contain_text("demo: stopped", timeout=60_000)
    settle(teacher)
    teacher.locator(".st-key-delete").get_by_role("button", name="Delete").click()
    teacher.get_by_role("button", name="Delete for good").click()
    expect(teacher.get_by_test_id("stMain")).to_contain_text("lesson: finished", timeout=60_000)
    assert not (classroom_server.runs / "demo").exists() and (classroom_server.runs / "lesson").is_dir()


def _forwarding(browser):
    """A tab of its own (a student's browser)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    return context, context.new_page()


def test_behind_a_proxy_on_the_host_students_keep_their_own_address(server, browser, page):
    """Streamlit's server (uvicorn) takes X-Forwarded-For from a loopback peer, such as a reverse proxy on the host:
    the forwarded student is not the host. The same server without the header, from loopback: the host."""
    context, proxied = _forwarding(browser)
    try:
        with ForwardingProxy(server.url, "192.0.2.77") as proxy:
            open_page(proxied, proxy, "train", "Train")
            expect(proxied.get_by_test_id("stMain").get_by_test_id("stAlert").first).to_contain_text(
                "Classroom mode")
            expect(proxied.get_by_test_id("stMain")).to_contain_text("ask the teacher")
            _no_controls(proxied)
    finally:
        context.close()
    open_page(page, server, "train", "Train")
    expect(page.get_by_test_id("stMain").get_by_text("Classroom mode")).to_have_count(0)


def test_a_student_cannot_claim_to_be_the_host_by_header(classroom_server, browser):
    """X-Forwarded-For from a peer that is not loopback is ignored: forging 127.0.0.1 unlocks nothing."""
    context, forged = _forwarding(browser)
    try:
        with ForwardingProxy(classroom_server.url, "127.0.0.1") as proxy:  # the proxy's peer is not loopback
            open_page(forged, proxy, "train", "Train")
            expect(forged.get_by_test_id("stMain").get_by_test_id("stAlert").first).to_contain_text(
                "Classroom mode")
            _no_controls(forged)
    finally:
        context.close()
