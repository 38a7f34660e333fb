"""higherpose-quickstart --quick end to end: data → train → evaluate → report folder, run as a
user would, from a folder outside the checkout (nothing of the checkout is needed)."""
import json
import os
import subprocess
import sys

import cv2


def test_quickstart_quick(tmp_path):
    out = tmp_path / "qs"
    proc = subprocess.run([sys.executable, "-m", "higherpose.cli.quickstart", "--quick", "--output", "qs",
                           "--samples", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "metrics.md").read_text().splitlines()
    assert table[0].startswith("| Arch | AP | Ap .5 | AP .75 | AR |")
    assert table[1] == "|---" * 10 + "|"
    assert table[2].startswith("| higher_pose | ")  # the default config: higher_pose_tiny
    assert "| Arch | AP |" in proc.stdout  # the table is printed
    curve = cv2.imread(str(out / "training_curve.png"))
    assert curve is not None and curve.size > 0
    samples = sorted(os.listdir(out / "samples"))
    assert len(samples) == 2 and all(cv2.imread(str(out / "samples" / s)) is not None for s in samples)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and set(summary["metrics"]) >= {"AP", "AP (hard)"}
    assert summary["layouts"] == "crowdpose"  # the packaged real layouts by default
    results = json.loads(open(summary["results_file"]).read())
    assert isinstance(results, list)
