"""`import higherpose.ops` stands alone: other repositories import it without pulling in models,
datasets, configs or the training engine."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORBIDDEN = ("higherpose.models", "higherpose.data", "higherpose.config", "higherpose.engine")


def test_import_ops_imports_no_models_data_config_or_engine():
    code = ("import json, sys; import higherpose.ops; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('higherpose'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "higherpose.ops" in modules
    leaked = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not leaked, f"import higherpose.ops also imported {leaked}"


def test_ops_api_is_usable_after_a_bare_import():
    code = ("import torch, higherpose.ops as ops; "
            "v, x, y, t = ops.heatmap_peaks(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8, 2), 3, 4); "
            "print(tuple(v.shape), tuple(t.shape))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 2, 4) (1, 2, 4, 2)"
