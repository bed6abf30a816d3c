"""DistributedDataParallel through torchrun: two CPU processes with the gloo backend."""
import json
import subprocess
import sys

import pytest

from flow.checkpoint import load_checkpoint
from flow.data import load_dataset
from flow.evaluate import evaluate_bpd
from flow.files import ROOT
from tests.helpers import ENV, metrics


pytestmark = pytest.mark.slow  # trains under torchrun

def train_two_ranks(run, *args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "flow.train",
           "--preset", "seed-mlp", "--data", "mnist", "--limit-train", "2000", "--limit-test", "300",
           "--batch-size", "25", "--log-every", "5", "--warmup", "10", "--device", "cpu",
           "--index-log", "--run-dir", str(run), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "run"
    train_two_ranks(run, "--epochs", "1")
    return run


def test_two_ranks_see_different_data_and_the_loss_falls(ddp_run):
    ranks = []
    for r in (0, 1):
        lines = (ddp_run / f"indices.rank{r}.txt").read_text().split()
        ranks.append({int(i) for i in lines})
    assert len(ranks[0]) == len(ranks[1]) == 1000
    assert not ranks[0] & ranks[1], "DistributedSampler must give each rank its own examples"
    steps = [m for m in metrics(ddp_run) if m["kind"] == "step"]
    assert len(steps) == 8  # 2000 examples / (2 ranks x 25) = 40 steps, a line every 5
    assert steps[-1]["train_bpd"] < steps[0]["train_bpd"]
    status = json.loads((ddp_run / "status.json").read_text())
    assert status["state"] == "finished" and status["world_size"] == 2


def test_only_rank_zero_writes_one_checkpoint(ddp_run):
    files = sorted(p.name for p in ddp_run.iterdir())
    assert files == ["checkpoint.safetensors", "indices.rank0.txt", "indices.rank1.txt", "metrics.jsonl",
                     "samples", "samples.png", "status.json", "train_state.pt"]
    assert len([line for line in (ddp_run / "metrics.jsonl").read_text().splitlines()]) == 9


def test_a_two_process_checkpoint_evaluates_the_same_in_one_process(ddp_run):
    model = load_checkpoint(ddp_run / "checkpoint.safetensors")
    assert model.metadata["world_size"] == 2
    total, n = evaluate_bpd(model, load_dataset("mnist", "test")[:300], seed=0)
    assert n == 300
    assert total / n == pytest.approx(model.metadata["test_bpd"], abs=1e-5)


def test_a_time_limit_stops_both_ranks_after_the_same_step(tmp_path):
    """Each rank's own clock crosses the limit at its own moment; had each stopped by it, one rank would
    wait forever in a collective the other never joins. The ranks share one clock (their mean)."""
    train_two_ranks(tmp_path, "--epochs", "100", "--time-limit", "4")
    steps = [len((tmp_path / f"indices.rank{r}.txt").read_text().splitlines()) for r in (0, 1)]
    status = json.loads((tmp_path / "status.json").read_text())
    assert steps[0] == steps[1] == status["step"] > 0
    assert status["state"] == "finished" and status["step"] < 100 * 40  # stopped by the clock, not the epochs
