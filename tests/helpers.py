"""Helpers shared by test modules (test modules never import one another): models, autograd, the trainer."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.autograd.functional import jacobian

from flow.files import ROOT
from flow.model import FlowConfig

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # for trainer processes

# two scales on 8x8 images, small nets: the multi-scale path in milliseconds
SMALL_MULTISCALE = FlowConfig(shape=(1, 8, 8), squeeze_first=False, n_scales=2, couplings_per_half=2,
                              final_couplings=2, width=8, res_blocks=1)


def randomize(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Fresh models start as the identity (zero heads); give every parameter random values."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, std)
    return module


def autograd_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of fn at the single example x (batch of one), from the full Jacobian."""
    def flat(v):
        return fn(v.view_as(x))[0].flatten()
    J = jacobian(flat, x.flatten())
    return torch.linalg.slogdet(J.double())[1]


def train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m flow.train ARGS` in a process of its own (one thread)."""
    proc = subprocess.run([sys.executable, "-m", "flow.train", *args], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"flow.train failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def wait_for(condition, what: str, timeout: float = 90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
