import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Fresh models start as the identity (zero heads); give every parameter random values."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """A training-runs root of its own (flow.jobs, the catalog and the Train page all read it); any run
    still training afterwards is killed."""
    import os
    import signal

    from flow import jobs

    monkeypatch.setenv(jobs.RUNS_ENV, str(tmp_path))
    monkeypatch.delenv(jobs.MAX_RUNS_ENV, raising=False)
    yield tmp_path
    for run in jobs.list_runs(tmp_path):
        if run.active and run.job:
            os.killpg(run.pid, signal.SIGKILL)
