"""The README's "Use it as a library" section runs: each of its python blocks, as written, in a fresh namespace in a
scratch folder (with a folder of 32x32 PNGs for the block that reads one)."""
import re

import numpy as np
import pytest

from flow.files import ROOT

SECTION = "## Use it as a library"


def library_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_section_has_the_four_examples():
    blocks = library_blocks()
    assert len(blocks) == 4
    assert "flow.fit(" in blocks[0] and "images_from_folder(" in blocks[1] and "flow.pretrained(" in blocks[2]
    assert "num_classes=2" in blocks[3] and "classify(" in blocks[3]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A scratch folder as the working directory, holding my_images/: 64 greyscale 32x32 PNGs."""
    Image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "my_images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(64):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), mode="L").save(folder / f"{k:02d}.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.integration  # trains for a few seconds in all: 10 epochs of 5-D points, two steps on 32x32 images
@pytest.mark.parametrize("index", range(4), ids=["own-points", "image-folder", "pretrained", "classes"])
def test_each_python_block_runs(index, scratch, capsys):
    exec(compile(library_blocks()[index], f"README.md python block {index + 1}", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.split()
    if index == 0:
        assert (scratch / "points.safetensors").is_file() and 0 < float(printed[-1]) < 10
    elif index == 1:
        assert (scratch / "my_images.safetensors").is_file()
    elif index == 2:
        assert float(printed[0]) == pytest.approx(1.298, abs=5e-4)  # the figure the README's comment gives
    else:
        assert float(printed[-1]) > 0.9  # a point at the centre of class 0 is classified as class 0
