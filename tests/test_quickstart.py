"""tools/quickstart.py --quick end to end: data → train → valid.py → report folder."""
import json
import os
import subprocess
import sys

import cv2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quickstart_quick(tmp_path):
    out = tmp_path / "qs"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "quickstart.py"), "--quick", "--output",
                           str(out), "--samples", "2"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "metrics.md").read_text().splitlines()
    assert table[0].startswith("| Arch | AP | Ap .5 | AP .75 | AR |")
    assert table[1] == "|---" * 10 + "|"
    assert table[2].startswith("| pose_hig... | ")
    assert "| Arch | AP |" in proc.stdout  # the table is printed
    curve = cv2.imread(str(out / "training_curve.png"))
    assert curve is not None and curve.size > 0
    samples = sorted(os.listdir(out / "samples"))
    assert len(samples) == 2 and all(cv2.imread(str(out / "samples" / s)) is not None for s in samples)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and set(summary["metrics"]) >= {"AP", "AP (hard)"}
    results = json.loads(open(summary["results_file"]).read())
    assert isinstance(results, list)
