"""One's own data set on the Train page (real app under AppTest, real trainer process): a bad upload is refused by
name with what to do; a good one is stored once, previewed, and trained end to end like MNIST."""
import io
import math
import zipfile

import numpy as np
import pytest
from PIL import Image

from app import datasets, jobs
from flow.checkpoint import read_header
from tests.app_helpers import app, fill, texts
from tests.helpers import wait_for

pytestmark = pytest.mark.integration  # the real app under AppTest


def npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def png_zip(sizes: list[int]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, side in enumerate(sizes):
            png = io.BytesIO()
            Image.fromarray(np.full((side, side), 40 * i, np.uint8)).save(png, format="PNG")
            z.writestr(f"img{i:02d}.png", png.getvalue())
    return buf.getvalue()


def squares(n: int = 160, side: int = 16) -> np.ndarray:
    """n uint8 images (n, side, side): a bright square of random size and place on black, as a tiny image set."""
    g = np.random.default_rng(0)
    x = np.zeros((n, side, side), np.uint8)
    for im in x:
        s = int(g.integers(3, side // 2))
        r, c = g.integers(0, side - s, 2)
        im[r:r + s, c:c + s] = 255
    return x


def upload(at, name: str, data: bytes):
    return at.file_uploader(key="train_upload").set_value((name, data, "application/octet-stream")).run()


RNG = np.random.default_rng(1)


@pytest.mark.parametrize("name, data, message", [
    ("notes.npy", b"just some notes, renamed", "is not a .npy file"),
    ("float-images.npy", npy(RNG.random((20, 16, 16)).astype(np.float32)), "float data must be points"),
    ("mixed.zip", png_zip([16, 16, 20]), "make every image the same size"),
    ("colour.npy", npy(RNG.integers(0, 256, (20, 3, 8, 8), dtype=np.uint8)), "python -m flow.train --data colour.npy"),
    ("six-d.npz", npz(x=RNG.normal(size=(50, 6)).astype(np.float32)), "draws 2-D points only"),
    ("notes.txt", b"hello", "upload .npy, .npz, .pt, or a .zip of PNG images"),
])
def test_bad_uploads_are_refused_by_name_with_what_to_do(runs_root, name, data, message):
    at = upload(app("app_pages/train.py"), name, data)
    assert not at.exception
    error = texts(at.error)
    assert name in error and message in error, error
    assert at.selectbox(key="f_data").value == "mnist" and not at.get("image")  # nothing previewed or chosen
    assert not any((runs_root / datasets.DATASETS_DIR).glob("*/*"))  # nothing stored


def test_a_data_set_that_is_too_large_is_refused_before_it_is_read(runs_root, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_UPLOAD_MB", 0.001)  # 1 kB: bounds the bytes before any decoding
    with pytest.raises(datasets.UploadError, match=r"big\.npy is .* the app takes files up to"):
        datasets.store_upload("big.npy", npy(squares(20)))


def test_an_archive_that_unpacks_too_large_is_refused_before_it_is_decompressed(runs_root, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_DECODED_MB", 64)
    bomb = io.BytesIO()  # 78 MB of zeros, compressed to about 80 kB
    np.savez_compressed(bomb, x=np.zeros((20000, 64, 64), np.uint8))
    assert len(bomb.getvalue()) < 2**20
    with pytest.raises(datasets.UploadError, match=r"zeros\.npz unpacks to 78\.1 MB; the app takes data sets up to 64"):
        datasets.store_upload("zeros.npz", bomb.getvalue())
    assert not any((runs_root / datasets.DATASETS_DIR).glob("*/*"))


@pytest.mark.slow
def test_an_uploaded_image_set_is_previewed_stored_once_and_trained_end_to_end(runs_root):
    data = npz(x=squares())
    at = upload(app("app_pages/train.py"), "squares16.npz", data)
    assert not at.exception and not at.error
    shown = texts(at.markdown)
    assert "**squares16.npz**: 160 uint8 images of 1×16×16 pixels" in shown and "**144** to train on" in shown
    assert "**16** to test on (held out 16 of 160 examples" in shown
    assert len(at.get("image")) == 1  # the grid of the first images
    stored = next((runs_root / datasets.DATASETS_DIR).glob("*/squares16.npz"))
    assert stored.read_bytes() == data and f"Stored as `{stored}`" in texts(at.caption)
    # the form now trains on it, with an image preset; the same file again is the same stored set
    assert at.selectbox(key="f_data").value == str(stored) and at.selectbox(key="f_preset").value == "realnvp-fast"
    assert datasets.store_upload("squares16.npz", data).path == stored
    assert len(list((runs_root / datasets.DATASETS_DIR).iterdir())) == 1

    at = fill(at, name="mine", epochs=1, batch_size=16, log_every=2)
    assert not at.error and "Launched **mine**" in texts(at.success)
    run = wait_for(lambda: (r := jobs.get_run("mine")).state in jobs.FINAL and r, "the run to end", timeout=180)
    assert run.state == "finished", run.log_tail()
    assert math.isfinite(run.test_bpd) and 0 < run.test_bpd < 9
    meta = read_header(run.checkpoint)[1]
    assert meta["data"] == str(stored) and meta["data_file"]["file"] == "squares16.npz"
    assert run.job["command"][run.job["command"].index("--data") + 1] == str(stored)
    # the run list and the live view name it by the file and chart it like MNIST
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert dict(zip(table.run, table.data))["mine"] == "squares16.npz"
    assert "realnvp-fast on squares16.npz" in texts(at.caption) and at.get("plotly_chart")
    assert "mine: finished" in texts(at.markdown) and at.download_button(key="download_run")
