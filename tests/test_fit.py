"""flow.train.fit: the command line's training loop on tensors and DataLoaders, in Python: its history, its
refusals, a subclass's base distribution, and the signal handlers it leaves as it found them."""
import math
import signal

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from flow.config import FlowConfig
from flow.data import load_dataset, make_toy
from flow.model import Flow
from flow.train import fit, main

POINTS = FlowConfig(shape=(2,), coupling="mlp", preprocess=False, n_blocks=4, hidden=(32,))
IMAGES = FlowConfig(shape=(1, 16, 16), width=8, res_blocks=0, couplings_per_half=1, final_couplings=1)


def moons(n: int, seed: int = 0) -> torch.Tensor:
    return make_toy("moons", n, seed)


def test_fit_on_points_returns_the_history_and_lowers_the_test_bits():
    model = Flow(POINTS)
    before = model.eval().bits_per_dim(moons(256, 1)).mean().item()  # eval: ActNorm starts on the training data
    history = fit(model.train(), moons(1024), test=moons(256, 1), epochs=3, batch_size=64, lr=1e-2, warmup=0,
                  progress=False)
    assert [h["epoch"] for h in history] == [1, 2, 3] and [h["step"] for h in history] == [16, 32, 48]
    assert set(history[0]) == {"epoch", "step", "train_bpd", "test_bpd", "seconds"}
    assert all(math.isfinite(h["train_bpd"]) and h["seconds"] >= 0 for h in history)
    assert history[-1]["test_bpd"] < history[0]["test_bpd"] < before
    # the test figure is the model's own bits/dim on the test points
    assert history[-1]["test_bpd"] == pytest.approx(model.bits_per_dim(moons(256, 1), seed=0).mean().item(), abs=1e-5)


def test_fit_on_8bit_images_of_another_size_and_from_a_dataloader():
    digits = torch.nn.functional.interpolate(load_dataset("mnist", "test")[:320].float(), size=16).to(torch.uint8)
    model = Flow(IMAGES)
    history = fit(model, digits[:256], test=digits[256:], epochs=1, batch_size=32, lr=1e-3, progress=False)
    assert len(history) == 1 and history[0]["step"] == 8 and 2.0 < history[0]["test_bpd"] < 9.0
    loader = DataLoader(TensorDataset(digits[:256], torch.zeros(256)), batch_size=64, shuffle=True)
    more = fit(model, loader, test=digits[256:], epochs=1, lr=1e-3, warmup=0, progress=False)
    assert more[0]["step"] == 4 and math.isfinite(more[0]["train_bpd"])


def test_data_that_does_not_suit_the_model_is_refused_by_name():
    model = Flow(POINTS)
    cases = [
        (dict(data=torch.zeros(64, 3)), ValueError, "shape \\(3,\\)"),
        (dict(data=torch.zeros(64, 2, dtype=torch.long)), TypeError, "pass x.float\\(\\)"),
        (dict(data=moons(64), test=torch.full((4, 2), float("nan"))), ValueError, "NaN"),
        (dict(data=moons(16), batch_size=32), ValueError, "larger than the 16 training examples"),
        (dict(data=moons(64), batch_size=None), ValueError, "needs a batch_size"),
        (dict(data=moons(64), lr=0.0), ValueError, "lr must be a number above 0"),
    ]
    for kwargs, error, words in cases:
        with pytest.raises(error, match=words):
            fit(model, **{"epochs": 1, "batch_size": 8, "lr": 1e-3, **kwargs})
    with pytest.raises(TypeError, match="8-bit pixels"):
        fit(Flow(IMAGES), torch.rand(64, 1, 16, 16), epochs=1, batch_size=8, lr=1e-3)


class ShiftedPrior(Flow):
    """A base distribution of its own: N(z; 3, I)."""

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return super().prior_log_prob(z - 3.0)


def test_the_loop_trains_the_models_own_base_distribution():
    config = FlowConfig(shape=(2,), coupling="mlp", preprocess=False, actnorm=False, n_blocks=2, hidden=(16,))
    x = moons(128)
    for cls in (Flow, ShiftedPrior):
        torch.manual_seed(0)
        model = cls(config)
        with torch.no_grad():  # one step on the whole set: its loss is the bits/dim of the untouched weights
            expected = model.bits_from_log_prob(model.log_prob(x)).mean().item()
        history = fit(model, x, epochs=1, batch_size=128, lr=1e-3, progress=False)
        assert history[0]["train_bpd"] == pytest.approx(expected, rel=1e-5)
        if cls is Flow:
            standard = expected
    assert expected > standard + 5  # N(z; 3, I) is far from these latents: the subclass's prior was trained


@pytest.fixture
def ctrl_c():
    """SIGINT raises KeyboardInterrupt, as in an interactive Python, whatever this process inherited (a shell
    starts a background job with SIGINT ignored, and Python then keeps it ignored)."""
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, inherited)


def test_fit_and_main_leave_the_signal_handlers_as_they_found_them(tmp_path, ctrl_c):
    found = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    fit(Flow(POINTS), moons(64), epochs=1, batch_size=32, lr=1e-3, progress=False)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == found
    broken = DataLoader(TensorDataset(torch.zeros(64, 3)), batch_size=32)  # fails inside the loop
    with pytest.raises(ValueError, match="shape"):
        fit(Flow(POINTS), broken, epochs=1, lr=1e-3, progress=False)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == found
    assert main(["--preset", "toy-2d", "--data", "moons", "--limit-train", "256", "--limit-test", "64",
                 "--batch-size", "128", "--epochs", "1", "--set", "n_blocks=2",
                 "--run-dir", str(tmp_path / "run")]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == found
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C works again
        signal.raise_signal(signal.SIGINT)


class CtrlCAt(torch.utils.data.Dataset):
    """Points whose example `at` presses Ctrl-C (SIGINT to this process) while its batch is being drawn."""

    def __init__(self, points: torch.Tensor, at: int):
        self.points, self.at = points, at

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == self.at:
            signal.raise_signal(signal.SIGINT)
        return self.points[i]


def test_ctrl_c_stops_fit_after_the_current_step_with_the_history_so_far(capsys):
    found = signal.getsignal(signal.SIGINT)
    loader = DataLoader(CtrlCAt(moons(256), at=100), batch_size=32)  # in the 4th batch of 8
    history = fit(Flow(POINTS), loader, test=moons(64, 1), epochs=3, lr=1e-3, progress=False)
    assert len(history) == 1 and history[0]["step"] == 4 and history[0]["epoch"] == 0.5
    assert math.isfinite(history[0]["test_bpd"]) and "stopped after step 4" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is found
