"""The class-conditional flow (`FlowConfig.num_classes`): p(x | y) through a learned Gaussian per class on the
latent (`layers.ClassAffine`; its contract test is in test_transforms.py), the marginal p(x) as the mixture of
the classes, `classify` by Bayes' rule, encode/decode/sample/trace with a class, training with labels
(`flow.fit`, `flow.train --conditional --init`), and today's unconditional checkpoints scoring as before."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from flow.checkpoint import load_checkpoint, save_checkpoint
from flow.classes import (ClassVerdict, carry_handwriting, nearest_neighbour_vote, samples_by_class,
                          which_class)
from flow.data import load_dataset, load_labels
from flow.files import ROOT
from flow.model import build_model
from flow.train import fit
from tests.helpers import ENV, metrics, randomize, train

SHIPPED = ROOT / "checkpoints" / "realnvp-res1-w64-mnist.safetensors"
SMALL = {"shape": (1, 8, 8), "width": 8, "res_blocks": 1}


@pytest.fixture
def model():
    """A small conditional flow with random weights and class priors (fresh ones are the identity)."""
    torch.manual_seed(0)
    return randomize(build_model("realnvp", num_classes=4, **SMALL), 0.1).double().eval()


def digits(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_the_marginal_is_the_mixture_of_the_conditionals(model):
    u = model.dequantize(digits(5), seed=0)
    # each class on its own pass through the flow, against the one-pass marginal
    each = torch.stack([model.log_prob(u, k) for k in range(4)], dim=1)
    mixture = torch.logsumexp(each, dim=1) - math.log(4)
    assert torch.allclose(model.log_prob(u), mixture, atol=1e-3)
    assert torch.allclose(model.class_log_probs(u), each, atol=1e-6)
    # and bits/dim of the marginal are those of that mixture
    assert torch.allclose(model.bits_per_dim(digits(5), seed=0), model.bits_from_log_prob(mixture), atol=1e-6)
    assert torch.allclose(model.class_bits(digits(5), seed=0), model.bits_from_log_prob(each), atol=1e-6)


def test_classify_is_bayes_rule_and_sums_to_one(model):
    x = digits(6)
    p = model.classify(x, seed=3)
    assert p.shape == (6, 4) and torch.allclose(p.sum(1), torch.ones(6, dtype=p.dtype))
    each = torch.stack([model.bits_per_dim(x, 3, k) for k in range(4)], dim=1)  # p(x | k) from its bits/dim
    log_joint = -each * model.dim * math.log(2)  # the D log 256 offset is the same for every class
    assert torch.allclose(p, torch.softmax(log_joint, dim=1), atol=1e-6)
    assert not torch.allclose(p, torch.full_like(p, 0.25)), "random class priors tell the classes apart"


def test_encode_decode_sample_and_trace_take_a_class(model):
    x = digits(3)
    u = (x.double() + 0.5) / 256
    for y in (2, torch.tensor([0, 3, 1])):
        z = model.encode(x, y)
        assert torch.allclose(model.decode(z, y), u, atol=1e-6)
        trace = model.trace(x, y)
        assert trace[-1].kind == "prior" and torch.allclose(trace[-1].state(), z)
        inverse = model.trace_inverse(z, y)
        assert inverse[1].kind == "prior" and torch.allclose(inverse[-1].output, u, atol=1e-6)
    assert model.trace(x, 2)[-1].name == "class prior (y=2)"
    # the same latent read as another class is another image: the class is in the prior, not in z
    z = model.encode(x, 0)
    assert not torch.allclose(model.decode(z, 1), u, atol=1e-3)
    # without a class: the flow's own coordinates, before any class's prior
    assert torch.allclose(model.decode(model.encode(x)), u, atol=1e-6)
    assert torch.equal(model.sample(4, 0.7, seed=1, y=3), model.decode(model.latents(4, 0.7, seed=1), 3))
    assert model.sample(5, 0.7, seed=1).shape == (5, 1, 8, 8)


def test_a_class_is_checked(model):
    x = digits(2)
    with pytest.raises(ValueError, match="classes run from 0 to 3"):
        model.log_prob(x, 4)
    with pytest.raises(TypeError, match="integer"):
        model.encode(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="one per example"):
        model.encode(x, torch.tensor([0, 1, 2]))
    unconditional = build_model("realnvp", **SMALL).eval()
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.log_prob(x, 1)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.classify(x)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("realnvp", num_classes=1)


def test_a_conditional_checkpoint_round_trips(model, tmp_path):
    save_checkpoint(model.float(), tmp_path / "c.safetensors", epoch=1)
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    assert loaded.num_classes == 4
    assert torch.equal(loaded.classify(digits(3), 0), model.classify(digits(3), 0))


def test_todays_unconditional_checkpoint_loads_and_scores_as_before():
    """The shipped model has no class prior in its file, loads without one, and gives the very bits/dim it gave
    before the conditional flow existed (measured with commit 5d3c0aa on these digits, seed 0)."""
    model = load_checkpoint(SHIPPED)
    assert model.num_classes == 0 and model.prior is None
    assert not any(k.startswith("prior.") for k in model.state_dict())
    before = [1.081788182258606, 1.3334083557128906, 0.6675454378128052, 1.5828797817230225, 1.2309503555297852,
              0.7613838911056519, 1.3372917175292969, 1.252084493637085, 1.4127267599105835, 1.6734615564346313,
              1.4927364587783813, 1.6916314363479614, 1.260231375694275, 1.4409043788909912, 0.7032585144042969,
              1.5190622806549072, 1.3037562370300293, 1.1013853549957275, 1.6975234746932983, 1.1004836559295654]
    with torch.no_grad():
        now = model.bits_per_dim(load_dataset("mnist", "test")[:20], seed=0)
    assert torch.allclose(now.double(), torch.tensor(before, dtype=torch.float64), atol=1e-6)


def test_fit_trains_with_labels_and_reports_accuracy():
    torch.manual_seed(0)
    model = build_model("realnvp", num_classes=10, shape=(1, 28, 28), width=8, res_blocks=0, n_scales=1,
                        final_couplings=2)
    x, y = load_dataset("mnist", "train")[:256], load_labels("mnist", "train")[:256]
    xt, yt = load_dataset("mnist", "test")[:100], load_labels("mnist", "test")[:100]
    history = fit(model, x, labels=y, test=xt, test_labels=yt, epochs=2, batch_size=64, lr=3e-3, warmup=0,
                  class_weight=5.0, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["test_accuracy"] > 0.3  # ten classes: 0.1 by chance
    assert history[-1]["test_bpd"] < history[0]["test_bpd"] or history[-1]["test_bpd"] < 5
    with pytest.raises(ValueError, match="labels="):
        fit(model, x, epochs=1, batch_size=64, lr=1e-3)
    with pytest.raises(ValueError, match="num_classes=11"):
        fit(model, x, labels=torch.full((256,), 10), epochs=1, batch_size=64, lr=1e-3)


def test_the_trainer_warm_starts_a_conditional_flow_and_records_its_accuracy(tmp_path):
    """--init from an unconditional run: the conditional model starts where it was (its marginal, every class's
    prior the identity, is that model's density), trains on the labels, and flow.evaluate reports its accuracy."""
    first, second = tmp_path / "plain", tmp_path / "cond"
    small = ["--preset", "realnvp", "--set", "width=8", "--set", "res_blocks=0", "--limit-train", "192",
             "--limit-test", "100", "--batch-size", "64", "--epochs", "1"]
    train(*small, "--run-dir", str(first))
    plain = load_checkpoint(first / "checkpoint.safetensors")
    cond = build_model(plain.config, num_classes=10)
    from flow.train import warm_start
    warm_start(cond, first / "checkpoint.safetensors")
    x = load_dataset("mnist", "test")[:8]
    with torch.no_grad():
        assert torch.allclose(cond.eval().bits_per_dim(x, 0), plain.bits_per_dim(x, 0), atol=1e-6)

    train(*small, "--conditional", "--init", str(first / "checkpoint.safetensors"), "--class-weight", "5",
          "--run-dir", str(second))
    model = load_checkpoint(second / "checkpoint.safetensors")
    assert model.num_classes == 10 and model.metadata["init"] == str(first / "checkpoint.safetensors")
    assert 0 <= model.metadata["test_accuracy"] <= 1
    assert model.metadata["options"]["class_weight"] == 5
    epoch = [m for m in metrics(second) if m["kind"] == "epoch"][-1]
    assert epoch["test_accuracy"] == model.metadata["test_accuracy"]
    out = subprocess.run([sys.executable, "-m", "flow.evaluate", "--checkpoint", str(second / "checkpoint.safetensors"),
                          "--limit", "100"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout)
    assert result["test_accuracy"] == pytest.approx(model.metadata["test_accuracy"], abs=1e-4)
    assert result["test_bpd"] == pytest.approx(model.metadata["test_bpd"], abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--data", "moons", "--preset", "toy-2d"], "moons has no labels"),
    (["--digit", "3"], "--digit keeps one"),
])
def test_the_trainer_refuses_a_conditional_run_without_classes(tmp_path, args, message):
    proc = train("--conditional", *args, "--epochs", "1", "--run-dir", str(tmp_path / "r"), check=False)
    assert proc.returncode != 0
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in proc.stderr.splitlines() if message in line)]


def test_samples_by_class_share_their_latents_column_by_column(model):
    samples, y = samples_by_class(model, 3, 0.7, seed=4)
    assert samples.shape == (12, 1, 8, 8) and y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    z = model.latents(3, 0.7, 4)
    assert torch.allclose(samples[3:6], model.decode(z, 1), atol=1e-6)
    row = carry_handwriting(model, digits(1), 2)
    assert row.shape == (4, 1, 8, 8)
    assert torch.allclose(row[2], (digits(1)[0].double() + 0.5) / 256, atol=1e-6)  # its own class: itself


def test_the_verdict_reads_the_probabilities():
    def verdict(p: list[float]) -> ClassVerdict:
        p = torch.tensor(p)
        top = torch.topk(p, 2).indices.tolist()
        return ClassVerdict(p, -p.log(), 1.0, *top)

    sure = verdict([0.01, 0.96, 0.01, 0.02])
    assert sure.kind == "sure" and sure.sentence().startswith("A sure answer: a 1 (p = 0.960)")
    doubt = verdict([0.02, 0.0, 0.55, 0.43])
    assert doubt.kind == "doubt" and doubt.sentence().startswith("A 2-or-3 doubt: 2 with p = 0.55, 3 with p = 0.43")
    unsure = verdict([0.3, 0.25, 0.25, 0.2])
    assert unsure.kind == "unsure" and "No class stands out" in unsure.sentence()


def test_which_class_is_classify_and_class_bits_of_one_example(model):
    x = digits(1)
    v = which_class(model, x, seed=2)
    assert torch.allclose(v.probabilities.double(), model.classify(x, 2)[0], atol=1e-6)
    assert torch.allclose(v.bits.double(), model.class_bits(x, 2)[0], atol=1e-6)
    assert v.marginal_bits == pytest.approx(model.bits_per_dim(x, 2).item(), abs=1e-6)
    assert v.answer == int(v.probabilities.argmax())


def test_the_nearest_neighbour_judge_votes_by_the_nearest_training_examples():
    train_x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [9.0, 9.0]])[:, None]
    train_y = torch.tensor([0, 0, 0, 1, 1, 2])
    queries = torch.tensor([[0.05, 0.05], [5.0, 5.1], [8.0, 8.0]])[:, None]
    assert nearest_neighbour_vote(queries, train_x, train_y, k=3).tolist() == [0, 1, 1]
    # a tie (one vote each) goes to the nearest
    assert nearest_neighbour_vote(torch.tensor([[8.9, 9.0]])[:, None], train_x[3:], train_y[3:], k=2).tolist() == [2]
    # on real digits: the judge names MNIST's test digits right nearly always
    x, y = load_dataset("mnist", "train")[:5000], load_labels("mnist", "train")[:5000]
    tx, ty = load_dataset("mnist", "test")[:300], load_labels("mnist", "test")[:300]
    assert (nearest_neighbour_vote(tx, x, y) == ty).float().mean() > 0.85


def test_the_lab_measures_how_sure_the_flow_is(model):
    from flow import lab

    x = digits(5)
    answer, top = lab.answers(model, x, 1)
    p = model.classify(x, 1).detach()
    assert top == pytest.approx(p.max(1).values.numpy(), abs=1e-6) and (answer == p.argmax(1).numpy()).all()
    sweep = lab.by_temperature(model, 3, 0, temperatures=(0.0, 1.0), y=2)
    assert torch.allclose(sweep[1.0][0], model.decode(model.latents(3, 1.0, 0), 2).detach(), atol=1e-5)


def test_a_data_file_with_labels_trains_a_conditional_flow(tmp_path):
    """--conditional on a data file takes its y (and y_test): as many classes as its labels have."""
    g = np.random.default_rng(0)
    y = g.integers(0, 3, 1200)
    x = (g.normal(size=(1200, 2)) * 0.3 + np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])[y]).astype(np.float32)
    np.savez(tmp_path / "blobs.npz", x=x[:1000], y=y[:1000], x_test=x[1000:], y_test=y[1000:])
    train("--data", str(tmp_path / "blobs.npz"), "--conditional", "--epochs", "2", "--batch-size", "100",
          "--warmup", "0", "--lr", "0.01", "--class-weight", "5", "--run-dir", str(tmp_path / "run"))
    model = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert model.num_classes == 3 and model.metadata["test_accuracy"] > 0.6  # three blobs: 1/3 by chance
    np.savez(tmp_path / "unlabelled.npz", x=x)
    proc = train("--data", str(tmp_path / "unlabelled.npz"), "--conditional", "--epochs", "1", "--run-dir",
                 str(tmp_path / "r2"), check=False)
    assert proc.returncode != 0 and "has no labels" in proc.stderr
