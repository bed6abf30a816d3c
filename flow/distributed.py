"""DistributedDataParallel under torchrun: set-up, the device of this rank, and averaging across ranks."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when present, else MPS where available, else the CPU; `name` overrides."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    """The hardware a run trains on, for checkpoint metadata and model cards."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def setup(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (identity in a single process)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
