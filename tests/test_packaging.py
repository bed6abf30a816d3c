"""The project as a package: pyproject.toml and requirements.txt agree, the wheel installs the library `flow` only
with its four core requirements, the console scripts and the public API of `flow` exist, `import flow` and
`--help` import no torch, and no file patches sys.path."""
import ast
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement

import flow
from flow.files import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CORE = {"torch", "numpy", "safetensors", "tqdm"}


def requirement_lines() -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    return [ln for ln in lines if ln]


def test_requirements_install_the_package_and_list_what_pyproject_lists():
    lines = requirement_lines()
    # `pip install -r requirements.txt` installs the project, its console scripts and the app's and tests' extras
    assert lines[-1] == "-e .[app,test]"
    project, extras = PYPROJECT["project"], PYPROJECT["project"]["optional-dependencies"]
    core = {r.name: r for r in map(Requirement, project["dependencies"])}
    assert set(core) == CORE
    pinned = {r.name: r for r in map(Requirement, lines[:-1])}
    wanted = {**core, **{r.name: r for r in map(Requirement, extras["app"] + extras["test"])}}
    assert set(pinned) == set(wanted)
    assert {Requirement(r).name for r in extras["mnist"]} <= {Requirement(r).name for r in extras["app"]}
    for name, req in pinned.items():
        if name in core:  # requirements.txt pins a version, or a narrower range, inside the library's range
            versions = {s.version for s in req.specifier} | {s.version for s in core[name].specifier}
            allowed = {v for v in versions if req.specifier.contains(v)}
            assert allowed and allowed <= {v for v in versions if core[name].specifier.contains(v)}, name
        else:  # the extras hold the very bounds requirements.txt gives (their reasons are written there)
            assert req.specifier == wanted[name].specifier, name
    assert project["version"] == flow.__version__


@pytest.mark.integration  # builds the wheel (setuptools in-process, no download: about 2 s)
def test_the_wheel_installs_the_library_only_with_its_core_requirements(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("realnvp_explorer-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"flow"}
    assert "flow/pretrained.py" in names and "flow/config.py" in names
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [Requirement(r) for r in requires if "extra ==" not in r]
    assert sorted(r.name for r in core) == sorted(CORE)
    assert {r.name: str(r.specifier) for r in core}["torch"] == "<3,>=2.13"
    extras = {m for m in re.findall(r"extra == \"(\w+)\"", metadata)}
    assert extras == {"mnist", "app", "test"}

    # installed (not editable), flow has no checkout: ROOT is the working directory, never site-packages
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    code = "import sys, flow.files; print(flow.files.__file__); print(flow.files.ROOT); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(site / "flow" / "files.py"), str(elsewhere), "False"]


@pytest.mark.integration  # fresh interpreters
def test_import_flow_and_the_commands_help_import_no_torch():
    code = ("import json, sys, runpy\n"
            "import flow, flow.config, flow.files, flow.pretrained\n"
            "first = sorted(sys.modules)\n"
            "sys.argv = ['flow.train', '--help']\n"
            "try:\n"
            "    runpy.run_module('flow.train', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(json.dumps([first, sorted(sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    after_import, after_help = json.loads(out.stdout.splitlines()[-1])
    assert "torch" not in after_import and "numpy" not in after_import
    assert callable(flow.pretrained) and "usage:" in out.stdout
    assert "torch" not in after_help, "python -m flow.train --help imported torch"


def test_console_scripts_name_functions_that_exist():
    for target in PYPROJECT["project"]["scripts"].values():
        module, function = target.split(":")
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, target


def test_the_public_api_is_importable_from_flow():
    from flow import (PRESETS, CheckpointError, Flow, FlowConfig, build_model,  # noqa: F401
                      fit, load_checkpoint, load_dataset, pretrained, read_data_file, save_checkpoint)

    assert set(flow.__all__) == {"__version__", "Flow", "FlowConfig", "PRESETS", "build_model", "load_checkpoint",
                                 "save_checkpoint", "CheckpointError", "pretrained", "fit", "load_dataset",
                                 "read_data_file"}
    assert all(hasattr(flow, name) for name in flow.__all__)


def test_no_file_patches_sys_path():
    folders = ("flow", "app", "ui", "app_pages", "bench", "tests")
    files = [*ROOT.glob("*.py"), *(p for d in folders for p in (ROOT / d).rglob("*.py"))]
    patched = [str(p.relative_to(ROOT)) for p in files if re.search(r"sys\.path\.(insert|append)", p.read_text())]
    assert patched == []


def test_without_pillow_a_picture_raises_one_importerror_naming_the_extra(monkeypatch):
    import torch

    from flow import viz

    assert viz.PILLOW is True  # the app's environment has it
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # what `import PIL.Image` meets where Pillow is missing
    with pytest.raises(ImportError, match=r'pip install "realnvp-explorer\[app\]"'):
        viz.image_grid(torch.zeros(2, 1, 4, 4))


@pytest.mark.integration  # imports torchvision: 3-4 s
@pytest.mark.parametrize("n, nrow, channels", [(1, 8, 1), (5, 2, 1), (10, 3, 1), (5, 2, 3)])
def test_the_grid_is_torchvisions_without_torchvision(n, nrow, channels):
    """flow.viz draws grids with numpy, so that Pillow is its one optional dependency; pixel for pixel the layout
    of torchvision's make_grid, which it replaced, in grey and in colour."""
    import numpy as np
    import torch

    from flow.viz import PAD, image_grid

    make_grid = pytest.importorskip("torchvision.utils").make_grid
    images = torch.rand(n, channels, 7, 5, generator=torch.Generator().manual_seed(n))
    grid = make_grid(images, nrow=nrow, padding=PAD, pad_value=0.5)
    expected = (grid[0] if channels == 1 else grid.permute(1, 2, 0)).numpy()
    assert np.array_equal(np.asarray(image_grid(images, nrow)), (expected * 255).round().astype(np.uint8))
