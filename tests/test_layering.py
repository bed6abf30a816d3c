"""The import direction: flow/ is the library (torch, numpy, safetensors; tqdm for its command lines; PIL and
torchvision, optional, only inside the functions that write or read pictures), app/ serves the app without
Streamlit, and only ui/ and the pages draw. Checked on the source (every import statement, also inside functions) and in a fresh interpreter."""
import ast
import json
import subprocess
import sys

import pytest

from flow.files import ROOT

STDLIB = set(sys.stdlib_module_names) | {"__future__"}
LIBRARY_MAY_IMPORT = {"flow", "torch", "numpy", "safetensors", "tqdm"}
PICTURES = {"PIL", "torchvision"}
# sample grids; torchvision's MNIST folder; the lab's drawn letters; folders of image files
PICTURE_MODULES = {"viz.py", "data.py", "lab.py", "datafile.py"}
APP_MAY_NOT_IMPORT = {"streamlit", "streamlit_drawable_canvas", "ui", "app_pages"}
APP_ONLY = {"streamlit", "plotly", "pandas", "app", "ui", "app_pages"}


def imported_packages(path) -> set[str]:
    """The top-level package of every import in a file (absolute imports; the code uses no relative ones)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "flow").glob("*.py")), ids=lambda p: p.name)
def test_the_library_imports_only_torch_numpy_safetensors_and_tqdm(path):
    allowed = STDLIB | LIBRARY_MAY_IMPORT | (PICTURES if path.name in PICTURE_MODULES else set())
    assert imported_packages(path) <= allowed, f"flow/{path.name} imports {imported_packages(path) - allowed}"


def top_level_packages(path) -> set[str]:
    """The top-level package of the imports a module runs when it is imported (its body, not its functions')."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "flow").glob("*.py")), ids=lambda p: p.name)
def test_the_library_imports_pillow_and_torchvision_only_when_it_draws(path):
    """They are extras (`pip install "realnvp-explorer[app]"`): importing any flow module must work without them."""
    assert not top_level_packages(path) & PICTURES, f"flow/{path.name} imports {PICTURES} at its top"


@pytest.mark.parametrize("path", sorted((ROOT / "app").glob("*.py")), ids=lambda p: p.name)
def test_the_app_package_draws_nothing(path):
    assert not imported_packages(path) & APP_MAY_NOT_IMPORT, f"app/{path.name}: widgets belong in ui/"


def test_the_check_catches_a_forbidden_import(tmp_path):
    module = tmp_path / "model.py"
    module.write_text("import torch\nfrom PIL import Image\n\ndef f():\n    import plotly.express as px\n")
    assert "plotly" in imported_packages(module) - STDLIB - LIBRARY_MAY_IMPORT
    assert top_level_packages(module) & PICTURES == {"PIL"}


@pytest.mark.integration  # a fresh interpreter that imports torch and every module
def test_in_a_fresh_interpreter_flow_is_cheap_the_catalog_spares_the_trainer_and_flow_loads_no_app():
    """One process, three snapshots of sys.modules: after `import flow` and the torch-free helpers, after the
    catalog, after every library module."""
    library = sorted(f"flow.{p.stem}" for p in (ROOT / "flow").glob("*.py") if p.stem != "__init__")
    code = "\n".join(["import json, sys", "snap = lambda: print(json.dumps(sorted(sys.modules)))",
                      "import flow, flow.files, flow.run_protocol", "snap()", "import app.catalog", "snap()",
                      "for name in list(sys.modules):",
                      "    if name.split('.')[0] in ('app', 'pandas', 'flow') and name != 'flow': del sys.modules[name]",
                      *(f"import {n}" for n in library), "snap()"])
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    cheap, catalog, everything = (set(json.loads(line)) for line in out.stdout.splitlines()[-3:])
    assert "torch" not in cheap
    assert "flow.train" not in catalog and "torchvision" not in catalog
    assert set(library) <= everything and not {m.split(".")[0] for m in everything} & APP_ONLY
