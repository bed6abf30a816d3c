"""The parts of the Train page: the New-run form, the run picker and its buttons, the live view of
one run, and the list of all runs with an overlay of their curves. The work is done by app.jobs."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app import datasets, export, jobs, learning
from app.train_plots import (block_figure, nll_figure, plane_figure, points_preview_figure,
                             samples_figure, samples_gif)
from flow.checkpoint import CheckpointError, read_header
from flow.data import DATASETS, TOY_SETS, data_label, load_dataset
from flow.model import IMAGE_PRESETS, PRESETS, Flow
from flow.viz import image_grid
from ui.classroom import may_control, refuse

REFRESH = "2s"  # how often the live view rereads the run folder while a run trains
PREVIEW_CELL = 48  # pixels across each image of an uploaded set's preview, about
LIVE_PLANE = "1s"  # how often a 2-D run's plane view rereads its newest snapshot
PICK, SELECTED = "train_run", "train_selected"  # SELECTED outlives a visit to another page
CONFIRM = "train_confirm_delete"
# Material icons: they need no emoji font (the run table shows the state as text alone)
ICON = {"running": ":green[:material/play_circle:]", "stopping": ":orange[:material/pending:]",
        "finished": ":green[:material/check_circle:]", "stopped": ":material/pause_circle:",
        "diverged": ":red[:material/warning:]", "failed": ":red[:material/error:]",
        "vanished": ":gray[:material/help:]"}


def _data_label(data: str | None) -> str:
    return f"{data} (2-D)" if data in TOY_SETS else data_label(data) + (" (uploaded)" if data not in DATASETS else "")


def select(name: str) -> None:
    st.session_state[PICK] = st.session_state[SELECTED] = name


def _show_refusal(e: Exception) -> None:
    st.error("\n".join(f"- {line}" for line in str(e).splitlines()), icon=":material/block:")


FORM_START = {"epochs": 3, "log_every": 10}  # where the form starts: a short run, a dense live chart
# short enough for a 1024-px projector's four columns; each field's help says what empty means
PLACEHOLDER = {"batch_size": "auto", "lr": "auto", "limit_train": "all", "limit_test": "all", "digit": "all",
               "snapshot_every": "auto"}


def _help(option) -> str:
    """The option's own help, with each preset's value where the preset decides."""
    tuned = ", ".join(f"{k}: {getattr(p, option.name):g}" for k, p in PRESETS.items()) \
        if option.name in ("batch_size", "lr") else ""
    return option.help + (f". Empty: the preset's own ({tuned})." if tuned else "")


QUICK_RUNS: dict[str, tuple[dict[str, object], str]] = {  # label: (form values, what the student will see and why)
    # measured: 15 epochs (1,170 steps) end at 0.925 test bits/dim (the shipped moons model: 0.890; below 1.0 from
    # epoch 7) after 46 s of training on one thread, 55 s with the start; the samples draw two crescents. 3 epochs
    # ended after 10 s at 1.71, a lumpy diamond, before the live view's first refresh.
    "toy-2d on moons: watch the plane bend (under a minute)": (
        {"preset": "toy-2d", "data": "moons", "epochs": 15},
        "Below the curves, live: the density starts as one round Gaussian blob and splits into two crescents, the "
        "samples follow, and the grid bends to carry the Gaussian onto the moons. Bits/dim fall from about 1.8 "
        "after the first epoch to about 0.93 after the fifteenth (the shipped moons model: 0.89), in under a "
        "minute on one thread. Afterwards, replay it."),
    "seed-mlp on 5,000 digits: noise is the lesson (a few minutes)": (
        {"preset": "seed-mlp", "data": "mnist", "epochs": 10, "limit_train": 5000},
        "Bits/dim fall to about 4.7, yet every sample stays noise, at best a speckled cloud where digits put their "
        "ink: the couplings are MLPs on the 784 flat pixels, which know nothing of which pixels are neighbours, so "
        "they cannot lay out a stroke. "
        "Compare realnvp-fast below: convolutions see neighbourhoods."),
    "realnvp-fast on 3,000 digits, 3 epochs: blotchy (a few minutes)": (
        {"preset": "realnvp-fast", "data": "mnist", "epochs": 3, "limit_train": 3000},
        "About 2 bits/dim, far better than seed-mlp, but the samples are black with specks and blobs: each coupling's "
        "convolutions see a 3×3 neighbourhood, so ink comes in blobs, and 280 steps are too few to join them into "
        "strokes. Scrub the samples: the same blobs grow from epoch to epoch. Compare realnvp-res1 on the 0s below."),
    "realnvp-res1 on the 0s, 4 epochs: zeros form (about 5 minutes)": (
        {"preset": "realnvp-res1", "data": "mnist", "epochs": 4, "digit": 0},
        "Scrub the samples: after epoch 1 specks and blobs, after epoch 2 broken rings, after epochs 3 and 4 zeros, "
        "about half of them closed rings and most of the rest open like a C. Two things make it quick: one class "
        "is a far simpler density than ten, and each coupling's residual block sees a 7×7 neighbourhood, so ink "
        "joins into strokes. Its bits/dim (about 2, scored on the test 0s) are higher than an all-digit model's "
        "although its samples are better: a 0 has more ink to describe than the average digit."),
}


def _typed(value: object) -> object:
    """A number as a field shows it (the number fields are text, read by `jobs.read_form`); choices as they are."""
    return value if isinstance(value, str) else "" if value is None else f"{value:g}" if isinstance(
        value, float) else str(value)


def _fill_form() -> None:
    """Put the chosen quick run's values into the form's fields (the others back to where the form starts)."""
    values = QUICK_RUNS[st.session_state["quick_run"]][0] if st.session_state.get("quick_run") else {}
    for o in jobs.FORM_OPTIONS:
        st.session_state[f"f_{o.name}"] = _typed(values.get(o.name, FORM_START.get(o.name, o.default)))


def new_run_form(expanded: bool) -> None:
    """The form (its fields are flow.options' declaration); a valid one starts a background run and selects
    it, a bad one is refused with reasons. Not drawn for a client that may not launch (ui.classroom): the check
    runs in the same script run that would act on a press, so a crafted rerun finds no form to submit."""
    if not may_control():
        return
    with st.expander("New run", icon=":material/add:", expanded=expanded):
        quick = st.selectbox("Quick runs", list(QUICK_RUNS), index=None, key="quick_run", on_change=_fill_form,
                             placeholder="pick one to fill in the form: each says what you will see, and why")
        if quick:
            st.info(QUICK_RUNS[quick][1], icon=":material/visibility:")
        uploaded = upload_data()
        values, launched = _form(uploaded)
    if launched:
        try:
            run = jobs.launch(jobs.read_form(values))
        except jobs.JobError as e:
            _show_refusal(e)
        else:
            select(run.name)
            st.success(f"Launched **{run.name}** in the background (pid {run.pid}). It keeps training if you "
                       "reload, go to another page or close the tab.", icon=":material/rocket_launch:")


UPLOAD, UPLOADED = "train_upload", "train_uploaded"  # the uploader's key; {file id: DataSet or the refusal}


def upload_data() -> datasets.DataSet | None:
    """The uploader of one's own data set: a new file is checked and stored once (app.datasets), previewed, and
    put in the form's Data set box with a preset that fits it. The stored set, or None (nothing, or refused)."""
    # no `type=`: Streamlit would refuse another suffix with an exception; app.datasets names it instead
    file = st.file_uploader("Your own data set (optional)", key=UPLOAD,
                            max_upload_size=datasets.MAX_UPLOAD_MB)  # above the app's 5 MB for one picture
    st.caption(datasets.LIMITS)
    if file is None:
        return None
    done = st.session_state.setdefault(UPLOADED, {})
    if file.file_id not in done:  # once per upload, not on every rerun
        try:
            done[file.file_id] = stored = datasets.store_upload(file.name, file.getvalue())
        except datasets.UploadError as e:
            done[file.file_id] = str(e)
        else:  # into the form, with a preset that takes it (set before the form's widgets are drawn)
            st.session_state["f_data"] = str(stored.path)
            st.session_state["f_preset"] = "toy-2d" if stored.kind == "points" else "realnvp-fast" if all(
                side % 4 == 0 for side in stored.example_shape[1:]) else "seed-mlp"  # two squeezes need sides of 4k
    result = done[file.file_id]
    if isinstance(result, str):
        st.error(result, icon=":material/block:")
        return None
    preview(result)
    return result


def preview(data: datasets.DataSet) -> None:
    """What a stored data set holds: its first images or its points, shape, dtype, counts and held-out split."""
    r = data.record
    shape = "×".join(map(str, r["shape"]))
    what = f"{r['dtype']} images of {shape} pixels" if data.kind == "images" else f"{r['dtype']} points in 2-D"
    st.markdown(f"**{r['file']}**: {r['train'] + r['test']:,} {what} · **{r['train']:,}** to train on, "
                f"**{r['test']:,}** to test on ({r['split']})")
    if data.kind == "images":
        first = torch.from_numpy(data.first[:32]).float() / 255
        scale = max(1, PREVIEW_CELL // max(first.shape[2:]))  # whole-pixel enlargement: the pixels stay visible
        st.image(image_grid(first, nrow=16, scale=scale), caption=f"The first {len(first)} training images")
    else:
        st.plotly_chart(points_preview_figure(data.first, f"The first {len(data.first):,} training points"),
                        key="upload_points", config={"displayModeBar": False})
    for note in (*data.notes, r.get("note")):
        if note:
            st.caption(note)
    st.caption(f"Stored as `{data.path}`; the run below trains with `--data` pointing there.")


def _form(uploaded: datasets.DataSet | None = None) -> tuple[dict[str, object], bool]:
    """The form's fields: (their values, whether Launch was pressed)."""
    choices = [*DATASETS, *([str(uploaded.path)] if uploaded else [])]
    if st.session_state.get("f_data") not in choices:
        st.session_state.pop("f_data", None)  # an upload removed: back to a built-in set
    with st.form("new_run", border=False):
        c = st.columns(3)
        values = {
            "preset": c[0].selectbox("Preset", list(PRESETS), key="f_preset",
                                     help="\n".join(f"- **{k}**: {p.summary}" for k, p in PRESETS.items())),
            "data": c[1].selectbox("Data set", choices, key="f_data", format_func=_data_label,
                                   help=f"{', '.join(IMAGE_PRESETS)} model images (MNIST, or an uploaded set); "
                                        "toy-2d models the 2-D sets."),
            "name": c[2].text_input("Run name", key="f_name", placeholder="automatic",
                                    help="Names the folder checkpoints/runs/<name>. Empty: "
                                         "preset-data-date-time.").strip(),
        }
        # Text fields, read on Launch by the options' own rule (jobs.read_form): a number field of the browser
        # drops letters without a word, and reads "1e9" as 1, so a run would start with a value nobody typed.
        numbers = [o for o in jobs.FORM_OPTIONS if not o.choices]
        for i, o in enumerate([*numbers, jobs.THREADS]):
            if i % 4 == 0:
                c = st.columns(4)
            key = f"f_{o.name}"  # set by a quick run: then the widget takes its value from the session state
            values[o.name] = c[i % 4].text_input(
                o.label, value=None if key in st.session_state else _typed(FORM_START.get(o.name, o.default)),
                key=key, placeholder=PLACEHOLDER.get(o.name), help=_help(o))
        return values, st.form_submit_button("Launch", type="primary", icon=":material/rocket_launch:")


DRAW_SIDE = 320  # pixels of the drawing canvas
DRAW_MODES = {"Strokes": "freedraw", "Points": "point"}


def draw_data() -> None:
    """GAN Lab's "draw your own data": paint strokes or points, see them as a 2-D data set, and train a toy-2d flow
    on them in the background (its plane view then bends live, as for the moons). Not drawn for a client that may
    not launch (ui.classroom)."""
    if not may_control():
        return
    with st.expander("Draw your own 2-D data set", icon=":material/draw:", expanded=False):
        from streamlit_drawable_canvas import st_canvas  # registers its component: only inside a running app

        left, right = st.columns(2)
        with left:
            mode = st.radio("Brush", list(DRAW_MODES), horizontal=True, key="draw_mode",
                            help="Strokes: drag to paint, sampled every few pixels. Points: click to place one.")
            st.space("small")  # the canvas's toolbar floats above it
            canvas = st_canvas(stroke_width=3, stroke_color="#FFFFFF", background_color="#000000",
                               fill_color="#FFFFFF", drawing_mode=DRAW_MODES[mode], point_display_radius=3,
                               width=DRAW_SIDE, height=DRAW_SIDE, key="draw_canvas")
        pixels = datasets.canvas_points((canvas.json_data or {}).get("objects", []))
        with right:
            try:
                points = datasets.drawn_dataset(pixels)
            except ValueError:
                st.info("Paint a shape on the black square (two blobs, a ring, a letter): its points become a data "
                        "set, and a flow learns to map a Gaussian onto it while you watch.", icon=":material/draw:")
                return
            k = datasets.draw_copies(len(pixels))
            st.plotly_chart(points_preview_figure(points, f"Your data set: {len(points):,} points"),
                            key="draw_points", config={"displayModeBar": False})
            st.caption(f"**{len(pixels):,} points** drawn; the data set holds each {k} times with Gaussian noise "
                       f"(σ = {datasets.DRAW_NOISE}), {len(points):,} in all, centred on zero and scaled to unit "
                       "standard deviation (y up). A tenth is held out to test on.")
            epochs = datasets.draw_epochs(len(points))
            if st.button("Train a flow on my points", type="primary", icon=":material/play_arrow:", key="draw_train",
                         help=f"toy-2d, {epochs} epochs (about {datasets.DRAW_STEPS} steps), in the background"):
                try:
                    stored = datasets.store_points(points)
                    run = jobs.launch(jobs.RunSpec(preset="toy-2d", data=str(stored.path), epochs=epochs,
                                                   log_every=5))
                except (datasets.UploadError, jobs.JobError) as e:
                    _show_refusal(e)
                else:
                    select(run.name)
                    st.success(f"Launched **{run.name}**: its plane appears below and bends as the flow learns.",
                               icon=":material/rocket_launch:")


def download_run(run: jobs.Run, where=st) -> None:
    """A finished or stopped run as one zip (app.export): checkpoint, command, metrics, a script that samples;
    drawn in `where` (a column of the run's buttons)."""
    if run.active or run.checkpoint_epoch is None:
        return
    where.download_button("Download this run (.zip)", data=lambda: export.run_zip(run), file_name=f"{run.name}.zip",
                       mime="application/zip", icon=":material/download:", key="download_run", on_click="ignore",
                       help="Its checkpoint, command.txt (the command that trains it again), metrics.jsonl and .csv, "
                            "load_and_sample.py (loads it and samples), and an uploaded data set up to "
                            f"{export.DATA_IN_ZIP_MB} MB.")


def pick_run(runs: list[jobs.Run]) -> jobs.Run:
    """Select box of runs; the choice is kept in the URL (?run=) and across page visits."""
    by_name = {r.name: r for r in runs}
    if st.session_state.get(PICK) not in by_name:
        wanted = st.query_params.get("run") or st.session_state.get(SELECTED)
        select(wanted if wanted in by_name else next((r.name for r in runs if r.active), runs[0].name))
    # the label leaves out the state: a select box does not redraw the label of its current choice
    name = st.selectbox("Run", list(by_name), key=PICK,
                        format_func=lambda n: f"{n} · {by_name[n].preset} on {jobs.scored_on(by_name[n])}")
    st.session_state[SELECTED] = st.query_params["run"] = name
    return by_name[name]


def _forget_delete() -> None:
    st.session_state.pop(CONFIRM, None)


@st.dialog("Delete this run?", on_dismiss=_forget_delete)
def _confirm_delete(name: str) -> None:
    st.write(f"This removes the folder **{name}** with its checkpoints, metrics and samples. It cannot be undone.")
    c = st.columns(2)
    if c[0].button("Delete for good", type="primary", key="delete_confirm"):
        _forget_delete()
        if not may_control():  # the dialog reruns alone, without run_actions' check
            refuse()
            return
        try:
            jobs.delete(name)
        except jobs.JobError as e:
            _show_refusal(e)
            return
        st.session_state.pop(PICK, None)
        st.rerun()
    if c[1].button("Cancel", key="delete_cancel"):
        _forget_delete()
        st.rerun()


def run_actions(run: jobs.Run) -> None:
    """Stop (graceful), Resume (from the last checkpoint), Delete (after a confirmation), and Download once it
    ended; only Download for a client that may not act (ui.classroom). The check runs in the very script run that acts on a press; the
    dialog reruns on its own (a fragment), so it asks again."""
    if not may_control():
        _forget_delete()
        download_run(run)  # taking a run away changes nothing: a student may
        return
    c = st.columns([1, 1, 2])  # wide enough for "Resume" with its icon and ⌄ on a 1024-px projector
    try:
        if run.active:
            if c[0].button("Stop", icon=":material/stop_circle:", key="stop", disabled=run.state == "stopping",
                           help="Finishes the current step, evaluates, saves a checkpoint and ends."):
                jobs.stop(run.name)
                st.rerun()
        else:
            with c[0].popover("Resume", icon=":material/play_arrow:", disabled=run.checkpoint_epoch is None):
                done = run.checkpoint_epoch or 0
                target = st.number_input("Train until epoch", value=max(run.epochs or 0, done + 1)
                                         if run.state != "finished" else done + 5, step=1, key="resume_epochs",
                                         help=f"Its last checkpoint has {done} epoch(s).")
                lr = st.number_input("Learning rate", value=run.job.get("lr"), step=1e-4, format="%.5f",
                                     key="resume_lr", placeholder="as before",
                                     help="A run that diverged may do better with a lower rate.")
                if st.button("Resume", type="primary", key="resume"):
                    jobs.resume(run.name, target, lr=lr)
                    st.rerun()
        c[1].button("Delete", icon=":material/delete:", key="delete", disabled=run.active,
                    on_click=st.session_state.__setitem__,
                    args=(CONFIRM, run.name))
        download_run(run, c[2])
        if st.session_state.get(CONFIRM) == run.name:  # kept until answered, so each rerun shows the question
            _confirm_delete(run.name)
    except jobs.JobError as e:
        _show_refusal(e)


def _details(run: jobs.Run) -> str:
    options = jobs.run_options(run)  # what it trains with, a command-line run's too
    parts = [f"{run.preset} on {jobs.scored_on(run)}",
             f"checkpoint: epoch {run.checkpoint_epoch}"
             if run.checkpoint_epoch is not None else "no checkpoint yet"]
    if run.test_bpd is not None:
        parts.append(f"test {run.test_bpd:.3f} bits/dim")
    if options:
        parts.append(f"batch {options.get('batch_size') or 'preset'}, lr {options.get('lr') or 'preset'}, "
                     f"seed {options.get('seed', 0)}")
    if run.pid:
        parts.append(f"pid {run.pid}")
    return " · ".join(parts)


def _progress_bar(run: jobs.Run, metrics: pd.DataFrame, prefix: str = "") -> None:
    """The run's progress (epoch, step, speed, time left); before its first metrics line, its message."""
    done = jobs.progress(run, metrics)
    if done or prefix:
        st.progress(done.fraction if done else 0.0, text=prefix + (done.text if done else run.message or ""))


def live_view(run: jobs.Run, unit: str) -> None:
    """Progress, NLL chart and latest samples of one run, rereading the folder every 2 s while it trains; below,
    the samples through training (MNIST) or the plane (2-D). The sample slider stays out of the timer's fragment,
    so scrubbing it is not undone every 2 s: the page is redrawn only when a new picture arrives."""
    images = jobs.data_kind(run.data) == "images"
    frames, pictures = learning.sample_frames(run.path) if images else [], learning.picture_count(run.path)

    @st.fragment(run_every=REFRESH if run.active else None)
    def view() -> None:
        if not run.path.is_dir():
            st.rerun()  # deleted from another session
        now = jobs.read_run(run.path)
        if now.active != run.active or (images and learning.picture_count(now.path) != pictures):
            st.rerun()  # it ended (or started), or drew new samples: the whole page, and (re)set the timer
        st.markdown(f"#### {ICON.get(now.state, '')} {now.name}: {now.state}")
        st.caption(_details(now))
        if now.state in ("failed", "vanished", "diverged"):
            (st.warning if now.state == "vanished" else st.error)(now.message)
            if now.state != "diverged":
                st.code(now.log_tail() or "(train.log is empty)", language=None)
        elif now.message:
            st.caption(now.message)
        metrics = jobs.read_metrics(now.path)
        _progress_bar(now, metrics)
        left, right = st.columns([3, 2])
        with left:
            if metrics.empty:
                st.info("No metrics yet: the first point appears after a few steps.")
            else:
                x = st.segmented_control("x axis", ["step", "epoch"], default="step", key="train_x") or "step"
                st.plotly_chart(nll_figure({now.name: (metrics, now.dim)}, unit, x), key="live_chart")
        with right:
            if now.samples.exists():
                st.image(now.samples.read_bytes(), width="stretch",
                         caption=f"Samples from the latest checkpoint (epoch {now.checkpoint_epoch})")
            else:
                st.caption("Samples appear after the first epoch.")
        if now.preset is not None:
            blocks_over_training(now)

    view()
    if len(frames) > 1:
        samples_over_training(run.name, tuple(frames))
    elif jobs.data_kind(run.data) == "points" and jobs.data_shape(run.data) == (2,):
        plane(run)


@st.cache_resource(max_entries=4, show_spinner=False)
def _samples_media(frames: tuple[learning.Frame, ...], mtimes: tuple[float, ...]):
    return samples_figure(list(frames)), samples_gif(list(frames))


def samples_over_training(name: str, frames: tuple[learning.Frame, ...]) -> None:
    """The run's sample pictures, every one decoded from the same latents: play or scrub them in the browser,
    or download them as a GIF."""
    st.markdown("##### Samples through training")
    figure, gif = _samples_media(frames, tuple(f.path.stat().st_mtime for f in frames))
    left, right = st.columns([3, 2])
    left.plotly_chart(figure, key="samples_chart", config={"displayModeBar": False})
    right.markdown(f"Each of these {len(frames)} pictures decodes **the same 64 latents** z, drawn once for this run, "
                   "with the weights of that moment: press play, or drag the slider, to watch the same samples form. "
                   "It runs in your browser; the server is not asked.")
    right.download_button("GIF of the samples", gif, f"{name}-samples.gif", "image/gif", icon=":material/download:",
                          key="samples_gif", on_click="ignore", help="The pictures in order, each labelled.")


@st.cache_resource(max_entries=256, show_spinner=False)
def _plane_view(run_dir: str, snapshot: str) -> learning.PlaneView:
    return learning.snapshot_view(Path(run_dir), Path(snapshot))


@st.cache_data(max_entries=8, show_spinner=False)
def _plane_data(spec: str, version: float) -> np.ndarray:
    """Up to 1,000 of a 2-D run's training points (a toy set by name, or its data file), drawn under the density."""
    return load_dataset(spec, "train")[:1000].numpy()


def _views(run: jobs.Run) -> list[learning.PlaneView]:
    """The newest snapshot's plane while the run trains; afterwards every snapshot's, for the replay."""
    if run.active:
        newest = learning.newest_snapshot(run.path)
        return [] if newest is None else [_plane_view(str(run.path), str(newest))]
    snapshots = learning.replay_snapshots(run.path)
    with st.spinner(f"Drawing the plane at {len(snapshots)} snapshots (once: every visit then reuses them) …",
                    show_time=True):
        return [_plane_view(str(run.path), str(p)) for p in snapshots]


def plane(run: jobs.Run, progress: bool = False) -> None:
    """A 2-D run's plane: while it trains, its newest snapshot (reread every second, with the run's progress
    bar if `progress`); afterwards a replay of all of them in the browser. Nothing trains here: the trainer
    writes the snapshots (flow.learning)."""
    st.markdown("##### The plane as the flow learns it")

    @st.fragment(run_every=LIVE_PLANE if run.active else None)
    def live() -> None:
        now = jobs.read_run(run.path)
        if now.active != run.active:
            st.rerun()  # it ended: the whole page again, which also stops this timer and offers the replay
        if progress and now.active:
            _progress_bar(now, jobs.read_metrics(now.path), f"Training {now.name}: ")
        try:
            views = _views(run)
        except (CheckpointError, OSError) as e:
            st.warning(f"A snapshot of this run cannot be read ({e}).")
            return
        if not views:
            st.caption("No weight snapshots: this run was trained with --snapshot-every 0 (or before snapshots "
                       "existed). Train a new 2-D run to watch the plane bend." if not run.active else
                       "The first snapshot appears after the first steps.")
            return
        try:
            data = _plane_data(run.data, jobs.data_version(run.data))
        except (ValueError, OSError) as e:  # its data file gone or broken
            st.warning(f"The data set of this run cannot be read ({e}).")
            return
        st.plotly_chart(plane_figure(views, data), key="plane_chart", config={"displayModeBar": False})
        st.caption(("Live: the newest snapshot, " if run.active else f"Replay of {len(views)} snapshots: ")
                   + "the heat map is the model's density p(x); the coloured points are samples decoded from the "
                   "same latents at every step (colour: the angle of their z), the grey lines a regular grid in z "
                   "carried into the plane by the flow. Where the grid's cells shrink, the density is high.")

    live()


@st.cache_resource(max_entries=16, show_spinner=False)
def _stage_names(checkpoint: str, mtime: float) -> list[str]:
    return Flow(read_header(checkpoint)[0]).transform.names


def blocks_over_training(run: jobs.Run) -> None:
    """Each block's log-det and each coupling's saturation over training, from the trainer's metrics."""
    with st.expander("Per block over training: where the likelihood comes from, and saturated couplings",
                     icon=":material/view_column:"):
        source = run.checkpoint if run.checkpoint.exists() else learning.newest_snapshot(run.path)
        try:
            history = source and learning.block_history(run.path, _stage_names(str(source), source.stat().st_mtime))
        except (CheckpointError, OSError):
            history = None
        if history is None:
            st.caption("No block statistics yet: they come with the metrics, from the first checkpoint on "
                       "(runs trained before they were recorded have none).")
            return
        st.plotly_chart(block_figure(history, run.data), key="blocks_chart", config={"displayModeBar": False})
        st.caption("Left: what each block's log|det J| adds to bits/dim on a fixed batch of 64 training examples "
                   "(blue shortens the code: the block spreads the data out; red lengthens it). Right: the share of "
                   "each coupling's scales s = scale · tanh(·) at the bound, |tanh| > 0.95. A coupling stuck there "
                   "no longer learns smoothly; a run about to diverge often shows one block's colour running away.")


def runs_overview(runs: list[jobs.Run], unit: str) -> None:
    """A table of every run with its state, and the curves of the runs ticked for comparison."""

    @st.fragment(run_every=REFRESH if any(r.active for r in runs) else None)
    def overview() -> None:
        now = jobs.list_runs()
        if [r.name for r in now if r.active] != [r.name for r in runs if r.active]:
            st.rerun()
        metrics = {r.name: jobs.read_metrics(r.path) for r in now}
        scored = {r.name: jobs.scored_on(r) for r in now}  # one class, a few test examples: said on every row
        table = pd.DataFrame([{
            "state": r.state, "run": r.name, "preset": r.preset,
            "data": scored[r.name], "progress": p.fraction if (p := jobs.progress(r, metrics[r.name])) else None,
            "epochs": f"{r.checkpoint_epoch if r.checkpoint_epoch is not None else '–'} / {r.epochs or '?'}",
            "test bits/dim": r.test_bpd, "started": datetime.fromtimestamp(r.started) if r.started else None,
        } for r in now])
        st.dataframe(table, hide_index=True, width="stretch", key="run_table", column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "test bits/dim": st.column_config.NumberColumn(format="%.3f"),
            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
        picked = st.multiselect("Compare runs", [r.name for r in now], key="train_compare",
                                placeholder="tick runs to overlay their curves")
        if picked:
            dims = {r.name: r.dim for r in now}
            st.plotly_chart(nll_figure({f"{n} · {scored[n]}": (metrics[n], dims[n]) for n in picked}, unit, "epoch"),
                            key="compare_chart")
            if len(sets := sorted({scored[n] for n in picked})) > 1:
                st.warning("These runs are not scored on the same data: " + "; ".join(
                    f"{', '.join(n for n in picked if scored[n] == s)} on {s}" for s in sets) + ". A model of one "
                    "class, or one scored on fewer test examples, gets figures that are not comparable with the "
                    "others': compare runs whose data reads the same.", icon=":material/compare_arrows:")

    overview()
