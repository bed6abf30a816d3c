"""The project as a package: pyproject.toml and requirements.txt agree, the console scripts and the public API
of `flow` exist, and no file patches sys.path."""
import ast
import re
import tomllib

import flow
from flow.files import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_lines() -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    return [ln for ln in lines if ln]


def test_requirements_install_the_package_and_list_what_pyproject_lists():
    lines = requirement_lines()
    assert lines[-1] == "-e ."  # `pip install -r requirements.txt` installs the project and its console scripts
    project = PYPROJECT["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["test"]
    assert sorted(declared) == sorted(lines[:-1])
    assert project["version"] == flow.__version__


def test_console_scripts_name_functions_that_exist():
    for target in PYPROJECT["project"]["scripts"].values():
        module, function = target.split(":")
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, target


def test_the_public_api_is_importable_from_flow():
    from flow import (CheckpointError, Flow, FlowConfig, PRESETS, build_model,  # noqa: F401
                      load_checkpoint, save_checkpoint)

    assert set(flow.__all__) == {"__version__", "Flow", "FlowConfig", "PRESETS", "build_model", "load_checkpoint",
                                 "save_checkpoint", "CheckpointError"}
    assert all(hasattr(flow, name) for name in flow.__all__)


def test_no_file_patches_sys_path():
    folders = ("flow", "app", "ui", "app_pages", "bench", "tests")
    files = [*ROOT.glob("*.py"), *(p for d in folders for p in (ROOT / d).rglob("*.py"))]
    patched = [str(p.relative_to(ROOT)) for p in files if re.search(r"sys\.path\.(insert|append)", p.read_text())]
    assert patched == []
