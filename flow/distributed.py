"""DistributedDataParallel under torchrun: set-up, the device of this rank, and averaging across ranks."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
import torch.distributed as dist


class DeviceError(ValueError):
    """A device this machine cannot give; the message says which it can."""


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when present, else MPS where available, else the CPU; `name` overrides (DeviceError if this
    machine has no such device). A bare "cuda" is the GPU of this process's LOCAL_RANK under torchrun."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise DeviceError(f"device {name!r}: this machine has no CUDA GPU that PyTorch {torch.__version__} can "
                              "use: use --device cpu (or auto)")
        index = local_rank if device.index is None else device.index
        if index >= count:
            raise DeviceError(f"device {name!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return torch.device("cuda", index)
    if device.type == "mps" and not mps:
        raise DeviceError(f"device {name!r}: Apple's MPS is not available here: use --device cpu (or auto)")
    if device.type not in ("cpu", "mps"):
        raise DeviceError(f"device {name!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    return device


def describe(device: torch.device) -> str:
    """The hardware a run trains on, for checkpoint metadata and model cards."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows: hosts of one kind differ."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_problem(device: torch.device) -> str | None:
    """Why bf16 autocast would not pay on this device (None where it does): a CUDA GPU without bf16, or a CPU
    without native bf16 arithmetic (AVX-512 BF16 or AMX), where oneDNN emulates it slower than float32."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        ok = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    else:
        ok = False
    return None if ok else (f"--bf16: this {device.type} has no native bf16 arithmetic (on a CPU: AVX-512 BF16 or "
                            "AMX), so it would train slower than float32: leave out --bf16")


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
