"""Checkpoints round-trip exactly; every unusable file raises CheckpointError and runs no code."""
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from flow.checkpoint import CheckpointError, load_checkpoint, read_header, save_checkpoint
from flow.model import build_model
from tests.helpers import SMALL_MULTISCALE, randomize


@pytest.fixture
def saved(tmp_path):
    model = randomize(build_model(SMALL_MULTISCALE), 0.05).eval()
    path = tmp_path / "m.safetensors"
    save_checkpoint(model, path, preset="custom", data="mnist", epoch=3, test_bpd=1.5)
    return model, path


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(loaded(x)[0], model(x)[0])
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))
    assert loaded.metadata["epoch"] == 3 and loaded.metadata["test_bpd"] == 1.5
    assert "torch" in loaded.metadata["library"]
    assert not loaded.training
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"], "no temporary file is left"


def test_header_is_readable_without_the_weights(saved):
    _, path = saved
    config, meta = read_header(path)
    assert config == SMALL_MULTISCALE and meta["preset"] == "custom"


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "garbage", "wrong architecture",
                                    "foreign safetensors", "nan weights"])
def test_unusable_checkpoints_raise_one_clear_error(saved, damage):
    model, path = saved
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x13 not a checkpoint" * 100)
    elif damage == "wrong architecture":
        config, meta = read_header(path)
        header = {"format": "realnvp-explorer/1", "config": json.dumps({**config.__dict__, "width": 16}),
                  "metadata": json.dumps(meta)}
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=header)
    elif damage == "foreign safetensors":
        save_file({"w": torch.zeros(2)}, str(path))
    elif damage == "nan weights":
        state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
        next(v for v in state.values() if v.is_floating_point()).fill_(float("nan"))
        config, meta = read_header(path)
        save_file(state, str(path), metadata={"format": "realnvp-explorer/1", "config": json.dumps(config.__dict__),
                                              "metadata": "{}"})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and err.value.reason


class _Exploit:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['PWNED_PATH'], 'w').write('pwned')",))


def test_a_malicious_pickle_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PWNED_PATH", str(marker))
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"state_dict": _Exploit()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    torch_file = tmp_path / "evil.pt"
    torch.save({"x": _Exploit()}, torch_file)
    with pytest.raises(CheckpointError):
        load_checkpoint(torch_file)
    assert not marker.exists()
