"""How good a model gets in a fixed wall-clock budget on this machine.

    python bench/train_budget.py [--preset realnvp-res1] [--seconds 600] [--procs N] [--precision P] [train options]

Trains from scratch with `flow.train --time-limit S` (the cosine learning-rate schedule is stretched
over the budget), then measures the final checkpoint on the full 10k MNIST test set with
`python -m flow.evaluate`. Prints one JSON line: test bits/dim, images/s, peak memory.
With --procs N > 1 the run is data-parallel (`torchrun --nproc_per_node N`, one thread each, batch
per process): more images/s, but fewer optimizer steps per image (bench/README.md has both measured).
--precision auto (the default) trains with `--bf16` where the CPU has native bf16 (AVX-512 BF16 or AMX:
35% more images/s for realnvp-res1 on one thread, and a lower figure, in bench/README.md), else in float32.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from flow.distributed import bf16_problem, cpu_model
from flow.files import ROOT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="realnvp-res1")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--procs", type=int, default=1, help="training processes (DDP, one thread each)")
    p.add_argument("--keep", type=Path, default=None, help="copy the final checkpoint here")
    p.add_argument("--precision", choices=("auto", "bf16", "float32"), default="auto",
                   help="auto: bf16 autocast where this CPU has native bf16, else float32")
    args, train_args = p.parse_known_args()
    bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_problem(torch.device("cpu")) is None)
    train_args += ["--bf16"] if bf16 else []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        launcher = [sys.executable, "-m", "flow.train"]
        env = dict(os.environ)
        if args.procs > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={args.procs}", "-m", "flow.train"]
            env["OMP_NUM_THREADS"] = "1"
        cmd = [*launcher, "--preset", args.preset, "--epochs", "1000", "--time-limit", str(args.seconds),
               "--limit-test", "1000", "--run-dir", str(run), *train_args]
        start = time.time()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wall = time.time() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        ckpt = run / "checkpoint.safetensors"
        out = subprocess.run([sys.executable, "-m", "flow.evaluate", "--checkpoint", str(ckpt)], cwd=ROOT,
                             check=True, capture_output=True, text=True)
        report = json.loads(out.stdout)
        steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        train_lines = [m for m in steps if m["kind"] == "step"]
        images = sum(m["images_per_s"] for m in train_lines) / max(len(train_lines), 1)
        meta = json.loads(subprocess.run([sys.executable, "-m", "flow.checkpoint", str(ckpt)], cwd=ROOT,
                                         check=True, capture_output=True, text=True).stdout)["metadata"]
        if args.keep:
            args.keep.write_bytes(ckpt.read_bytes())
    print(json.dumps({
        "preset": args.preset, "extra_args": train_args, "budget_s": args.seconds,
        "train_wall_s": round(wall, 1), "epochs": meta["epoch"], "steps": meta["step"],
        "batch": meta["batch_size"] * meta["world_size"], "lr": meta["lr"],
        "test_bpd": report["test_bpd"], "n_test": report["n"], "images_per_s": round(images, 1),
        "peak_rss_mb_per_process": round(peak_mb), "procs": args.procs,
        "threads": env.get("OMP_NUM_THREADS", "default"),
        "precision": meta.get("precision", "float32"), "cpus": os.cpu_count(), "machine": cpu_model(),
        "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
