"""Fixtures for every test. Plain helpers live in tests/helpers.py and tests/app_helpers.py: test modules
import those, never one another."""
import os
import signal

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    """A training-runs root of its own (app.jobs, the catalog and the Train page all read it); any run
    still training afterwards is killed."""
    from app import jobs

    monkeypatch.setenv(jobs.RUNS_ENV, str(tmp_path))
    monkeypatch.delenv(jobs.MAX_RUNS_ENV, raising=False)
    yield tmp_path
    for run in jobs.list_runs(tmp_path):
        if run.active and run.job:
            os.killpg(run.pid, signal.SIGKILL)
