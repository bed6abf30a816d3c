"""Data files (flow/datafile.py) and data specs (flow/data.py): what a file may hold, the held-out split, the
record a run keeps, every refusal in one line, PNG folders and zips, and the cache of a file's versions."""
import hashlib
import io
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from flow import data
from flow.datafile import MAX_HELD_OUT, DataFileError, images_from_folder, read_data_file

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (50, 12, 12), dtype=np.uint8)
POINTS = RNG.normal(size=(40, 3))  # float64: converted


def test_an_npy_of_8bit_images_gets_a_channel_and_a_deterministic_held_out_split(tmp_path):
    path = tmp_path / "digits.npy"
    np.save(path, IMAGES)
    a, b = read_data_file(path), read_data_file(path)
    assert a.x.shape == (45, 1, 12, 12) and a.x_test.shape == (5, 1, 12, 12) and a.x.dtype == torch.uint8
    assert torch.equal(a.x_test, b.x_test) and a.y is None and a.y_test is None
    # the split keeps the file's order, and every example lands in exactly one part
    together = torch.cat([a.x, a.x_test]).flatten(1).numpy()
    assert sorted(map(bytes, together)) == sorted(map(bytes, IMAGES.reshape(50, -1)))
    assert a.record == {"file": "digits.npy", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                        "shape": [1, 12, 12], "dtype": "uint8", "train": 45, "test": 5, "labels": 0,
                        "split": "held out 5 of 50 examples (a seed-0 permutation)", "note": ""}


def test_an_npz_with_labels_and_its_own_test_set_and_float64_points_converted(tmp_path):
    path = tmp_path / "points.npz"
    np.savez(path, x=POINTS, y=np.arange(40), x_test=POINTS[:7], y_test=np.arange(7))
    f = read_data_file(path)
    assert f.x.dtype == torch.float32 and f.x.shape == (40, 3) and f.x_test.shape == (7, 3)
    assert f.y.tolist() == list(range(40)) and f.y_test.dtype == torch.int64
    assert f.record["split"] == "the file's own x_test" and f.record["labels"] == 47
    assert "float64 converted to float32" in f.record["note"]
    assert torch.allclose(f.x.double(), torch.from_numpy(POINTS))


def test_a_pt_file_of_a_tensor_or_a_dict_and_colour_images(tmp_path):
    colour = torch.from_numpy(RNG.integers(0, 256, (30, 3, 8, 8), dtype=np.uint8))
    torch.save(colour, tmp_path / "a.pt")
    torch.save({"x": colour, "y": torch.arange(30)}, tmp_path / "b.pt")
    a, b = read_data_file(tmp_path / "a.pt"), read_data_file(tmp_path / "b.pt")
    assert a.x.shape == (27, 3, 8, 8) and torch.equal(a.x, b.x) and b.y.shape == (27,)
    many = read_data_file_of(tmp_path, np.zeros((200_000, 2), np.float32))  # 10% would be 20,000
    assert many.record["test"] == MAX_HELD_OUT and many.record["train"] == 200_000 - MAX_HELD_OUT


def read_data_file_of(tmp_path, x, name="x.npy"):
    np.save(tmp_path / name, x)
    return read_data_file(tmp_path / name)


BAD = {  # what the file holds: words of the one-line refusal
    "nan": (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN or infinity"),
    "one dim": (np.zeros((10, 1), np.float32), "at least 2 dimensions"),
    "flat": (np.zeros(10, np.float32), "points (N, D)"),
    "float images": (np.zeros((10, 8, 8), np.float32), "uint8"),
    "int16 range": (np.full((10, 8, 8), 300, np.int16), "0..255"),
    "channels last": (np.zeros((10, 8, 8, 3), np.uint8), "transpose it to (N, C, H, W)"),
    "int points": (np.zeros((10, 2), np.int64), "points must be floats"),
    "bool": (np.zeros((10, 2), bool), "boolean"),
    "one example": (np.zeros((1, 2), np.float32), "at least 2"),
    "text": (np.array([["a", "b"], ["c", "d"]]), "not numbers"),
}


@pytest.mark.parametrize("case", BAD)
def test_unusable_arrays_are_refused_in_one_line_saying_what_to_do(tmp_path, case):
    array, words = BAD[case]
    with pytest.raises(DataFileError) as err:
        read_data_file_of(tmp_path, array)
    assert words in str(err.value) and "\n" not in str(err.value) and "x.npy" in str(err.value)


def test_unusable_files_are_refused_by_name(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object))
    np.savez(tmp_path / "labels.npz", x=POINTS, y=np.arange(5))
    np.savez(tmp_path / "stray.npz", x=POINTS, w=POINTS)
    np.savez(tmp_path / "unlike.npz", x=POINTS, x_test=IMAGES)
    torch.save({"x": torch.zeros(4, 2), "model": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    (tmp_path / "points.csv").write_text("1,2\n")
    (tmp_path / "junk.pt").write_bytes(b"not a tensor")
    cases = {"objects.npy": "pickle", "labels.npz": "one per example", "stray.npz": "holds w",
             "unlike.npz": "make them alike", "module.pt": "without running code", "points.csv": ".npy, .npz or .pt",
             "junk.pt": "without running code", "missing.npy": "check the path"}
    for name, words in cases.items():
        with pytest.raises(DataFileError) as err:
            read_data_file(tmp_path / name)
        assert words in str(err.value) and "\n" not in str(err.value), (name, str(err.value))
    with pytest.raises(DataFileError, match="more than the 100 allowed"):
        read_data_file(tmp_path / "labels.npz", max_bytes=100)


def test_data_specs_name_a_built_in_set_or_a_file_read_once_per_version(tmp_path):
    path = tmp_path / "pts.npy"
    np.save(path, POINTS)
    spec = str(path)
    assert data.is_data_file(spec) and not data.is_data_file("moons") and not data.is_data_file("x.csv")
    assert [data.data_label(s) for s in ("mnist", "moons", spec)] == ["MNIST", "moons", "pts.npy"]
    assert data.example_shape(spec) == (3,) and data.dataset_size(spec, "train") == 36
    assert data.dataset_size(spec, "test") == 4 and data.load_labels(spec, "train") is None
    assert data.load_dataset(spec, "train") is data.load_dataset(spec, "train")  # cached
    assert data.default_data("toy-2d") == "moons" and data.default_data("realnvp") == "mnist"
    assert data.fits_data("toy-2d", spec) and not data.fits_data("realnvp", spec)
    assert data.fits_data("realnvp", "mnist") and not data.fits_data("toy-2d", "mnist")
    with pytest.raises(ValueError, match="leave the digit out"):
        data.load_dataset(spec, "train", digit=3)
    np.save(path, POINTS[:20])  # a new version is read again
    os.utime(path, ns=(1, 1))
    assert data.dataset_size(spec, "train") == 18
    path.unlink()
    with pytest.raises(DataFileError, match="check the path"):
        data.load_dataset(spec, "train")
    assert data.data_problem("moons") is None and "the path of a .npy" in data.data_problem("x.txt")


def png(mode: str, size=(6, 4), value=100) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode)).save(buf, format="PNG")
    return buf.getvalue()


def test_png_folders_and_zips_become_uint8_images(tmp_path):
    folder = tmp_path / "greys"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(png("L", value=10))
    (folder / "sub" / "b.PNG").write_bytes(png("L", value=20))
    (folder / "notes.txt").write_text("not an image")
    greys = images_from_folder(folder)
    assert greys.shape == (2, 1, 4, 6) and greys.dtype == torch.uint8 and greys[:, 0, 0, 0].tolist() == [10, 20]
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as z:
        z.writestr("x/1.png", png("RGBA", value=50))
        z.writestr("x/2.png", png("L", value=60))
        z.writestr("__MACOSX/x/._1.png", b"resource fork")
    mixed = images_from_folder(tmp_path / "mixed.zip")
    assert mixed.shape == (2, 3, 4, 6) and mixed[1, :, 0, 0].tolist() == [60, 60, 60]


def test_png_sets_that_cannot_train_are_refused_in_one_line(tmp_path):
    def zipped(name, files):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            for entry, content in files.items():
                z.writestr(entry, content)
        return tmp_path / name

    cases = {
        zipped("sizes.zip", {"a.png": png("L"), "b.png": png("L", size=(5, 5))}): "same size",
        zipped("empty.zip", {"a.txt": b"x"}): "no PNG image",
        zipped("broken.zip", {"a.png": b"\x89PNG not really"}): "not a readable PNG",
        zipped("jpeg.zip", {"a.png": (lambda b: (Image.new("L", (4, 4)).save(b, format="JPEG"), b.getvalue())[1])(
            io.BytesIO())}): "JPEG image named .png",
        zipped("deep.zip", {"a.png": (lambda b: (Image.new("I;16", (4, 4)).save(b, format="PNG"), b.getvalue())[1])(
            io.BytesIO())}): "8 bits per channel",
        tmp_path / "nothing": "does not exist",
    }
    for source, words in cases.items():
        with pytest.raises(DataFileError) as err:
            images_from_folder(source)
        assert words in str(err.value) and "\n" not in str(err.value), (source, str(err.value))
    many = zipped("many.zip", {f"{i}.png": png("L") for i in range(3)})
    with pytest.raises(DataFileError, match="more than the 2 allowed"):
        images_from_folder(many, max_images=2)
    with pytest.raises(DataFileError, match="pixels, more than"):
        images_from_folder(many, max_pixels=10)
    with pytest.raises(DataFileError, match="bytes, more than"):
        images_from_folder(many, max_bytes=10)
