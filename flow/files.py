"""The project's folder and its one way of writing a file: small helpers for the library and the app alike.

No torch here, so the app's job layer can import it without the model.
"""
from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable
from pathlib import Path



def _root() -> Path:
    """The checkout that holds this flow/ (its pyproject.toml beside flow/), as for `pip install -e .` and the
    app; for a wheel installed into site-packages, the current directory at import, never site-packages."""
    checkout = Path(__file__).resolve().parent.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd().resolve()


# The project folder: checkpoints/ (the shipped models and runs/), data/ (MNIST's torchvision folder),
# streamlit_app.py. An installed library has no checkout: there it is the folder Python was started in.
ROOT = _root()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call write(tmp_path), fsync, then rename over path: readers see the old file or the new one.

    The temporary file is `.<name>.<pid>.tmp` beside `path` (`.<name>.<pid>.<thread>.tmp` outside the main thread,
    so the threads of one app server never share one); if write fails, it is removed and the error raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = str(os.getpid())
    if threading.current_thread() is not threading.main_thread():
        writer += f".{threading.get_native_id()}"
    tmp = path.with_name(f".{path.name}.{writer}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _remove_stale_temporaries(path)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete `.<name>.<pid>[.<thread>].tmp` files left by writers of `path` that died mid-write (SIGKILL, power cut)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_exists(int(pid)):
            tmp.unlink(missing_ok=True)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
