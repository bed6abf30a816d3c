"""Helpers shared by the app's test modules: the app under AppTest, the New-run form, tiny runs."""
from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from app import jobs
from flow.files import ROOT

APP = str(ROOT / "streamlit_app.py")
LAUNCH = "FormSubmitter:new_run-Launch"


def app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def fill(at: AppTest, **values) -> AppTest:
    """Fill in the New-run form (widget keys f_<field>) and press Launch."""
    for key, value in values.items():
        widget = next(w for w in (at.selectbox, at.number_input, at.text_input)
                      for w in w if w.key == f"f_{key}")
        widget.set_value(value if widget.type != "text_input" or value is None else str(value))  # typed text
    return at.button(key=LAUNCH).click().run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def tiny(name: str, epochs: int = 1000, **kw) -> jobs.RunSpec:
    """Steps of 64 points, 8 a epoch, a metrics line every 2 steps; long enough to be stopped."""
    return jobs.RunSpec(**{"preset": "toy-2d", "data": "moons", "epochs": epochs, "name": name, "batch_size": 64,
                           "limit_train": 512, "limit_test": 256, "log_every": 2, **kw})


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure (as JSON) of the chart with widget key `key`."""
    return json.loads(next(c for c in at.get("plotly_chart") if c.key == key).proto.spec)


def numbers(values) -> np.ndarray:
    """Plotly's JSON holds arrays as lists or as base64 typed arrays."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray(values, dtype=float)
