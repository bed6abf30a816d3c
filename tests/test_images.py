"""Upload -> 28x28 MNIST-style digit (flow/images.py) and the digit-source widget (ui/digits.py)."""
import io

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
