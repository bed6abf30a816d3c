"""What a training process and whoever starts it agree on, importable without torch or the trainer:
the exit codes of `python -m flow.train` and `flow.evaluate`, and the rule both the trainer and the
app's job layer check before an epoch (one full batch)."""
from __future__ import annotations

EXIT_CRASHED = 1  # a bug: the traceback is in the log
EXIT_REFUSED = 2  # settings, data or device that cannot work (argparse uses 2 for bad options too)
EXIT_DIVERGED = 3
EXIT_WRITE_FAILED = 4


def batch_problem(batch_size: int, examples: int) -> str | None:
    """Why `batch_size` cannot train on `examples` examples, or None: every epoch needs one full batch."""
    if batch_size <= examples:
        return None
    return (f"batch size {batch_size} is larger than the {examples} training examples: an epoch would have no "
            "full batch. Lower the batch size, or train on more examples.")
