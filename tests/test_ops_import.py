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


def test_import_ops_needs_no_scipy():
    # scipy is a test-only dependency (the grouping reference); block it and import the ops.
    code = ("import sys; sys.modules['scipy'] = None; import torch, higherpose.ops as ops; "
            "print(ops.ae_group(torch.rand(1, 14, 8, 8), torch.rand(1, 14, 8, 8, 1))[2].shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "torch.Size([1])"


PRODUCT_OPS = {"higherpose::heatmap_peaks", "higherpose::ae_group", "higherpose::linear_sum_assignment",
               "higherpose::window_attention", "higherpose::window_attention_forward",
               "higherpose::window_attention_backward", "higherpose::set_window_attention_kernel"}


def test_shipped_library_holds_only_product_ops():
    """The CUDA block emulator and its ops are test machinery (tests/csrc, built as the separate
    `higherpose_testing` library): neither registered by nor compiled into higherpose._C."""
    code = ("import json, torch, higherpose.ops; from higherpose.ops._library import library_path; "
            "names = sorted({n for n in torch._C._dispatch_get_all_op_names() if n.startswith('higherpose')}); "
            "print(json.dumps([names, library_path()]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    names, path = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(names) == PRODUCT_OPS
    binary = open(path, "rb").read()
    for emulator_symbol in (b"run_grid", b"warp_exchange", b"swapcontext", b"emulator_self_test"):
        assert emulator_symbol not in binary, f"{emulator_symbol!r} is compiled into {path}"
