"""The model card's comparison picture: image models' samples from the same latents (`python -m flow.viz`)."""
import subprocess
import sys

import numpy as np
from PIL import Image

from app.catalog import CHECKPOINT_DIR
from flow.checkpoint import load_checkpoint
from flow.files import ROOT
from flow.viz import GAP, LABEL_HEIGHT, model_label, samples_picture, side_by_side
from tests.helpers import ENV

SHIPPED = [CHECKPOINT_DIR / "realnvp-mnist.safetensors", CHECKPOINT_DIR / "seed-mlp-mnist.safetensors"]


def test_each_panel_is_that_model_decoding_the_same_latents():
    models = [load_checkpoint(p) for p in SHIPPED]
    img = side_by_side(models, ["a", "b"], n=16, temperature=0.7, seed=3, scale=2)
    z = models[0].latents(16, 0.7, 3)
    panels = [samples_picture(m, z, 2) for m in models]
    assert panels[0].tobytes() != panels[1].tobytes()  # two models, two pictures
    out = np.asarray(img)
    for i, panel in enumerate(panels):
        x = i * (panel.width + GAP)
        assert np.array_equal(out[LABEL_HEIGHT:, x:x + panel.width], np.asarray(panel))
    assert img.size == (2 * panels[0].width + GAP, LABEL_HEIGHT + panels[0].height)


def test_the_command_writes_a_labelled_png_and_refuses_what_shares_no_latents(tmp_path):
    out = tmp_path / "cmp.png"
    cli = [sys.executable, "-m", "flow.viz"]
    done = subprocess.run([*cli, *map(str, SHIPPED), "--out", str(out)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert Image.open(out).text["temperature"] == "0.7"
    assert model_label(load_checkpoint(SHIPPED[0])) == "realnvp, 15 epochs (1.554)"
    for args, words in [([SHIPPED[0], CHECKPOINT_DIR / "toy-2d-moons.safetensors"], "image models of one shape"),
                        ([SHIPPED[0], "--labels", "one", "two", "three"], "3 labels for 1 checkpoints"),
                        ([tmp_path / "missing.safetensors"], "no such file")]:
        done = subprocess.run([*cli, *map(str, args), "--out", str(tmp_path / "x.png")], cwd=ROOT, env=ENV,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and words in done.stderr
        assert "Traceback" not in done.stderr
