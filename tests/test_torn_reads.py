"""Reading a run while its checkpoint is rewritten (issue 28): a writer renames a new version over the file many
times a second, and every read (flow.checkpoint's readers, app.jobs.read_run, the catalog) sees one whole
version, never a header of one and the size of another."""
import subprocess
import sys
import textwrap
import time

import pytest

from app import jobs
from app.catalog import CHECKPOINT_DIR, list_models
from flow.checkpoint import read_header, verify_checkpoint
from flow.files import ROOT

pytestmark = pytest.mark.integration  # a writer process

# flow.train rewrites a tiny run's checkpoint about twice a second here (it also draws samples each epoch): too
# slow to hit the window. This writer is the trainer's own save_checkpoint (atomic_write: temporary + rename) in
# a loop, with a header that changes length each time, so consecutive versions differ in size.
WRITER = textwrap.dedent(f"""
    import sys
    from flow.checkpoint import load_checkpoint, save_checkpoint
    model = load_checkpoint({str(CHECKPOINT_DIR / "toy-2d-moons.safetensors")!r})
    for i in range(10**6):
        save_checkpoint(model, sys.argv[1], preset="toy-2d", data="moons", epoch=i, test_bpd=1.0,
                        note="x" * (i * 7 % 97))
""")


def test_reading_a_run_while_its_checkpoint_is_rewritten_never_fails(tmp_path):
    run = tmp_path / "runs" / "busy"  # the catalog of folder tmp_path lists tmp_path/runs' runs
    run.mkdir(parents=True)
    checkpoint = run / "checkpoint.safetensors"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(checkpoint)], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while not checkpoint.exists() and time.time() < deadline:
            time.sleep(0.05)
        seen, reads = set(), 0
        # until 2,000 reads have seen 40 versions (a few seconds): the reader before this fix failed about
        # once in a thousand reads of a file rewritten 15 times a second
        while (reads < 2000 or len(seen) < 40) and time.time() < deadline:
            epoch = read_header(checkpoint)[1]["epoch"]
            state = jobs.read_run(run)
            assert state.checkpoint_epoch is not None and state.checkpoint_epoch >= epoch
            if reads % 50 == 0:  # the readers that also read the weights, now and then
                assert verify_checkpoint(checkpoint)[1]["epoch"] >= epoch
                (entry,) = list_models(tmp_path)
                assert entry.error is None and entry.epoch >= epoch, entry.error
            seen.add(epoch)
            reads += 1
        assert writer.poll() is None, "the writer died"
        assert len(seen) >= 40, f"only {len(seen)} versions read in {reads} reads"
    finally:
        writer.kill()
        writer.wait()
