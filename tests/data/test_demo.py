"""`kiln demo`, run as a new user runs it: a subprocess, bounded in time."""
import re
import subprocess
import sys
import time


def test_kiln_demo_runs(tmp_path):
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "kiln.cli", "demo", "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.time() - t0 < 240
    out = r.stdout
    acc = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    assert acc >= 97.0, out[-2000:]
    assert "Epoch 20/20" in out and "val_accuracy" in out
    assert "graph @digits_cnn(" in out and "artifacts in" in out
    export = tmp_path / "out" / "export"
    assert (export / "libdigits_cnn.so").is_file() and (export / "digits_cnn.h").is_file()
    assert (tmp_path / "out" / "ir" / "00-lower.kir").is_file()
