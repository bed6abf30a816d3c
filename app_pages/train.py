"""Train: launch Real NVP trainings as background processes and watch them learn."""
import streamlit as st

from app import jobs
from app.train_plots import UNITS
from ui.classroom import notice
from ui.training import draw_data, live_view, new_run_form, pick_run, run_actions, runs_overview

st.title(":material/fitness_center: Train")
st.caption(f"Each run is a separate `python -m flow.train` process writing into `{jobs.runs_root()}/<name>/`: "
           "it keeps training when you reload, switch pages or close the tab. "
           f"At most {jobs.max_running()} run(s) train at a time (setting: `{jobs.MAX_RUNS_ENV}`).")

can_act = notice("train")  # a student's browser (classroom mode): read-only, with a field for the teacher key
runs = jobs.list_runs()
new_run_form(expanded=not runs)
draw_data()
runs = jobs.list_runs()  # with the one just launched
if not runs and not can_act:
    st.info("No runs yet: when the teacher starts one, it appears here with its live chart.")
    st.stop()
if not runs:
    st.info("No runs yet: open **New run**, pick one of the **Quick runs** (each says what you will see, and why) "
            "or fill in the form yourself, and press **Launch**. toy-2d on moons shows the plane bend while it trains; "
            "realnvp-res1 draws zeros within about five minutes when it learns the 0s only; digit-like samples of "
            "every class need far longer (the shipped realnvp-mnist: 2.3 hours).")
    st.stop()

st.divider()
unit = st.segmented_control("Negative log-likelihood in", UNITS, default=UNITS[0], key="train_unit",
                            help="nats per example = bits/dim × D × ln 2 (D = 784 for MNIST, 2 for the toy sets, an uploaded set's own size)")
unit = unit or UNITS[0]  # clicking the chosen segment again deselects it
st.caption("**Test** bits/dim: `Flow.bits_per_dim` averaged over the test set, each image dequantized with uniform "
           "noise from the run's seed, on the [0, 256) pixel scale: the number `python -m flow.evaluate --seed` and "
           "the Layer Explorer give. **Train**: the training loss, with fresh noise at every step. 2-D runs: bits "
           "per coordinate of the continuous density, no dequantization.")
run = pick_run(runs)
run_actions(run)
live_view(run, unit)

st.divider()
st.subheader("All runs")
runs_overview(runs, unit)
