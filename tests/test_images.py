"""Upload -> 28x28 MNIST-style digit (flow/images.py) and the digit-source widget (ui/digits.py)."""
import ctypes
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from flow.data import load_mnist
from app.images import MAX_PIXELS, ImageInputError, to_mnist_uint8


def encode(arr_or_img, fmt: str = "PNG", **kw) -> bytes:
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_mnist("test")[0][:20].numpy()


def test_an_mnist_png_comes_back_unchanged(digits):
    out = to_mnist_uint8(encode(digits[0]))
    assert out.shape == (1, 1, 28, 28) and out.dtype == torch.uint8
    assert torch.equal(out[0, 0], torch.from_numpy(digits[0]))


def test_dark_on_light_is_inverted_and_16_bit_is_scaled(digits):
    assert torch.equal(to_mnist_uint8(encode(255 - digits[1]))[0, 0], torch.from_numpy(digits[1]))
    sixteen = to_mnist_uint8(encode(digits[2].astype(np.uint16) * 257))  # I;16 PNG, 0..65535
    assert torch.equal(sixteen[0, 0], torch.from_numpy(digits[2]))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_a_big_photo_of_a_digit_is_fitted_like_mnist(digits, fmt):
    """Dark ink on paper, 10x too big, any format: cropped, scaled to 20 px, centred by mass."""
    paper = Image.fromarray(255 - digits[3]).resize((280, 280), Image.Resampling.BILINEAR).convert("RGB")
    out = to_mnist_uint8(encode(paper, fmt)).float()[0, 0]
    target = torch.from_numpy(digits[3]).float()
    assert (out - target).abs().mean() < 12  # resampling blurs edges a little; a shift or inversion would cost > 40
    mass = out / out.sum()
    cy, cx = (mass.sum(1) * torch.arange(28.0)).sum(), (mass.sum(0) * torch.arange(28.0)).sum()
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1


@pytest.mark.parametrize("ink", [0, 255])
def test_ink_on_a_transparent_background_becomes_a_white_digit(ink):
    rgba = np.zeros((100, 60, 4), np.uint8)
    rgba[..., :3] = ink
    rgba[20:80, 25:35, 3] = 255  # an opaque vertical bar: a "1"
    out = to_mnist_uint8(encode(rgba))[0, 0]
    assert out[14, 14] > 200 and out[0, 0] == 0 and out[14, 2] == 0


def test_palette_gif_with_transparency():
    img = Image.new("P", (40, 40), 0)
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    img.paste(1, (15, 5, 25, 35))  # black bar on a transparent background
    out = to_mnist_uint8(encode(img, "GIF", transparency=0))[0, 0]
    assert out[14, 14] > 200 and out[0, 0] == 0


def test_tiny_and_odd_inputs_give_a_digit_not_a_crash():
    for pic in (np.array([[200]], np.uint8), np.zeros((1, 500), np.uint8), np.zeros((28, 28), np.uint8)):
        out = to_mnist_uint8(encode(pic))
        assert out.shape == (1, 1, 28, 28) and out.dtype == torch.uint8
    assert to_mnist_uint8(encode(np.zeros((28, 28), np.uint8))).max() == 0  # blank stays blank
    cmyk = Image.new("CMYK", (50, 50), (0, 0, 0, 0))
    assert to_mnist_uint8(encode(cmyk, "TIFF")).shape == (1, 1, 28, 28)
    bar = np.zeros((10, 30), np.uint8)
    bar[3:7, 2:28] = 255
    square = to_mnist_uint8(encode(bar), fit=False)[0, 0]
    assert square[:10].max() == 0 and square[14, 4:24].min() > 200  # padded square, not stretched


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"%PDF-1.4 certainly not a picture", "not a picture"),
    ("a text file\n".encode() * 50, "not a picture"),
])
def test_non_images_get_a_clear_message(data, words):
    with pytest.raises(ImageInputError, match=words):
        to_mnist_uint8(data)


def test_truncated_and_huge_files_are_refused_with_what_to_do(digits):
    with pytest.raises(ImageInputError, match="could not be decoded"):
        to_mnist_uint8(encode(np.random.default_rng(0).integers(0, 255, (300, 300), np.uint8))[:2000])
    side = int(MAX_PIXELS ** 0.5) + 10
    huge = encode(Image.new("1", (side, side)))  # a few kB on disk, too many pixels to decode
    with pytest.raises(ImageInputError, match="megapixels.*Shrink"):
        to_mnist_uint8(huge)


DIGIT_APP = """
import streamlit as st
from ui.digits import digit_input
d = digit_input("src", "Source")
st.session_state["got"] = None if d is None else d.clone()
"""


@pytest.mark.integration
def test_digit_widget_by_class_and_index_and_a_non_image_upload():
    at = AppTest.from_string(DIGIT_APP, default_timeout=30).run()
    assert not at.exception
    images, labels = load_mnist("test")
    at.selectbox(key="src_class").set_value("7").run()
    at.number_input(key="src_index").set_value(3).run()
    sevens = torch.nonzero(labels == 7).flatten()
    assert torch.equal(at.session_state["got"][0, 0], images[sevens[3]])
    at.button(key="src_random").click().run()
    assert at.session_state["got"].shape == (1, 1, 28, 28)
    at.radio(key="src_source").set_value("Upload").run()
    at.file_uploader(key="src_upload").set_value(("notes.txt", b"just some notes", "text/plain")).run()
    assert not at.exception and at.session_state["got"] is None
    assert "not a picture" in at.error[0].value
    at.file_uploader(key="src_upload").set_value(("seven.png", encode(255 - images[0].numpy()), "image/png")).run()
    assert torch.equal(at.session_state["got"][0, 0], images[0])


def _peak_bytes(decode) -> int:
    """How far the resident memory of this process rises above where it was while `decode()` runs: Linux's
    high-water mark (VmHWM), restarted just before (clear_refs 5) after glibc has given its free memory back
    (malloc_trim), so memory the decode reuses is counted as well. Sees Pillow's C allocations, unlike tracemalloc."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmHWM")
    decode()
    return _status("VmHWM") - before


def _status(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) * 1024


def _picture(mode: str, side: int) -> Image.Image:
    """A mostly black square of `side` px in `mode` with a bright bar (compresses to a few kB or MB)."""
    img = Image.new(mode, (side, side))
    img.paste({"F": 1.0, "I;16": 65535, "P": 1, "RGBA": (255, 255, 255, 255)}.get(mode, 255),
              (side // 3, side // 8, side // 2, side - side // 8))
    return img


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists() or sys.platform != "linux",
                    reason="peak memory is read from Linux's /proc")
def test_one_upload_costs_at_most_150_mb_whatever_its_format(tmp_path):
    """Each picture but the JPEG and the BMP is at the edge of what is decoded (about 100 MB at full size in its own
    mode, by the estimate checked before decoding); the old code converted to RGBA or float32 at full size first
    and took two to three times that. The decode's peak (resident memory, Pillow's C allocations included) must
    stay under 150 MB; a float TIFF whose full-size decode would take 159 MB is refused by name."""
    cases = {"float.tiff": (_picture("F", 4800), "TIFF", {"compression": "tiff_adobe_deflate"}),
             "sixteen.png": (_picture("I;16", 4000), "PNG", {}),
             "rgba.png": (_picture("RGBA", 3400), "PNG", {}),
             "palette.gif": (_picture("P", 3200), "GIF", {}),
             "photo.bmp": (_picture("L", 3000), "BMP", {}),  # BMP does not compress: 9 MB on disk
             "photo.webp": (_picture("RGB", 2400), "WEBP", {"lossless": True}),
             "photo.jpeg": (_picture("RGB", 6000), "JPEG", {})}  # draft: decoded at 1/8 scale
    peaks = {}
    for name, (img, fmt, kw) in cases.items():
        data = encode(img, fmt, **kw)
        del img
        peaks[name] = _peak_bytes(lambda: to_mnist_uint8(data))
    assert all(peak < 150e6 for peak in peaks.values()), {n: f"{p / 1e6:.0f} MB" for n, p in peaks.items()}
    assert peaks["float.tiff"] > 60e6  # the measurement sees the full-size float decode (92 MB): it can fail
    bomb = encode(_picture("F", 6300), "TIFF", compression="tiff_adobe_deflate")
    with pytest.raises(ImageInputError, match=r"6300x6300 in mode F: decoding it would take 159 MB.*Shrink"):
        to_mnist_uint8(bomb)
