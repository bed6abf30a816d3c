#!/usr/bin/env bash
# How the shipped checkpoints were made: our own trainer, then a copy of each run's last checkpoint.
# The realnvp model is trained separately (see checkpoints/README.md for its command and figures).
set -euo pipefail
cd "$(dirname "$0")/.."
for data in moons circles 8gaussians checkerboard 2spirals; do
  python -m flow.train --preset toy-2d --data "$data" --epochs 30 --run-dir "checkpoints/runs/ship-toy-$data"
  cp "checkpoints/runs/ship-toy-$data/checkpoint.safetensors" "checkpoints/toy-2d-$data.safetensors"
done
python -m flow.train --preset seed-mlp --data mnist --epochs "${SEED_EPOCHS:-10}" --run-dir checkpoints/runs/ship-seed-mlp
cp checkpoints/runs/ship-seed-mlp/checkpoint.safetensors checkpoints/seed-mlp-mnist.safetensors
