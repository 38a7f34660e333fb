"""The standalone CMake library as another project uses it: built from CMakeLists.txt and installed
(`cmake --install`), it loads alone and runs its ops; it fake-traces every op without the Python
package (C++ Meta kernels; the grouping ops' Python fakes found through the module the library
names); it coexists with the Python package in one process, loaded in either order; and
examples/cpp (find_package(higherpose), linked with -Wl,--as-needed) builds and passes its checks.

The library and the examples are built once per test run by the fixtures in tests/conftest.py
(CI builds and installs the library beforehand and points HIGHERPOSE_CMAKE_PREFIX at the install).
"""
import glob
import os
import subprocess
import sys
import textwrap

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from cmake_builds import cmake, run_checked  # noqa: E402  (tests/cmake_builds.py)


@pytest.fixture(scope="module")
def cmake_library(install_prefix):
    found = glob.glob(os.path.join(install_prefix, "lib*", "libhigherpose_ops*.so"))
    assert len(found) == 1, f"expected one libhigherpose_ops*.so under {install_prefix}, found {found}"
    return found[0]


def _python(code, *args):
    """Run `code` in a fresh interpreter (a process that has loaded nothing of ours yet)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_install_tree_has_library_header_and_package_config(install_prefix):
    for pattern in ("lib*/libhigherpose_ops*.so", "include/higherpose/ops.h",
                    "lib*/cmake/higherpose/higherposeConfig.cmake",
                    "lib*/cmake/higherpose/higherposeConfigVersion.cmake",
                    "lib*/cmake/higherpose/higherposeTargets.cmake"):
        assert glob.glob(os.path.join(install_prefix, pattern)), f"{pattern} is not installed under {install_prefix}"


# Loads only the CMake library (never higherpose._C or any higherpose module) and the peaks reference
# straight from its file.
PEAKS = """
    import importlib.util, sys
    import torch

    lib, reference_file = sys.argv[1], sys.argv[2]
    torch.ops.load_library(lib)
    spec = importlib.util.spec_from_file_location("peaks_reference", reference_file)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    assert not any(name.startswith("higherpose") for name in sys.modules), "higherpose was imported"

    torch.manual_seed(0)
    cases = [
        (torch.rand(2, 14, 33, 40), torch.randn(2, 14, 33, 40, 2), 5, 30),
        (torch.randint(0, 3, (1, 3, 16, 16)).float(), torch.randn(1, 3, 16, 16, 1), 3, 300),
        (torch.rand(1, 4, 20, 30).transpose(2, 3), torch.randn(1, 4, 30, 20, 2), 1, 7),
    ]
    for heatmaps, tags, kernel, k in cases:
        got = torch.ops.higherpose.heatmap_peaks(heatmaps, tags, kernel, k)
        want = reference.heatmap_peaks(heatmaps, tags, kernel, k)
        for name, g, w in zip(("values", "x", "y", "peak_tags"), got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0, msg=name)
    try:
        torch.ops.higherpose.heatmap_peaks(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4, 1), 2, 3)
        raise SystemExit("an even kernel was accepted")
    except RuntimeError as e:
        assert "kernel must be a positive odd" in str(e), e
    print("CMAKE-LIBRARY-OK")
"""


def test_library_alone_runs_heatmap_peaks(cmake_library):
    reference_file = os.path.join(ROOT, "higherpose", "ops", "reference", "peaks.py")
    done = _python(PEAKS, cmake_library, reference_file)
    assert done.returncode == 0 and "CMAKE-LIBRARY-OK" in done.stdout, done.stdout + done.stderr


# Fake-traces every op in a process that loaded only the library: the static-shape ops through the
# library's own Meta kernels (no Python module of ours imported), then the grouping ops through
# the Python module the library names for their fakes (higherpose._C must stay unloaded).
FAKE = """
    import importlib, sys
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    torch.ops.load_library(sys.argv[1])
    ops = torch.ops.higherpose
    with FakeTensorMode(shape_env=ShapeEnv()):
        h, t = torch.empty(2, 14, 32, 24), torch.empty(2, 14, 32, 24, 2)
        v, x, y, pt = ops.heatmap_peaks(h, t, 5, 30)
        assert [tuple(a.shape) for a in (v, x, y, pt)] == [(2, 14, 30)] * 3 + [(2, 14, 30, 2)]
        assert x.dtype == torch.int64
        q = torch.empty(2, 13, 9, 16)
        out, lse = ops.window_attention_forward(q, q, q, [7, 7], 2, 0.35, [3, 3], "zeros", None, None, None)
        assert out.shape == q.shape and lse.shape == (2, 2, 13, 9) and lse.dtype == torch.float32
        grads = ops.window_attention_backward(q, q, q, q, out, lse, [7, 7], 2, 0.35, [3, 3], "mask", None, None,
                                              torch.empty(169, 2))
        assert [tuple(g.shape) for g in grads] == [(2, 13, 9, 16)] * 3 + [(16,), (16,), (169, 2)]
        assert ops.window_attention(q, q, q, [7, 7], 2, 0.35, [3, 3], "zeros", None, None, None).shape == q.shape
        try:
            ops.window_attention_forward(q, q, q, [7, 7], 3, 0.35, [0, 0], "zeros", None, None, None)
            raise SystemExit("the Meta kernel accepted 3 heads for 16 channels")
        except RuntimeError as e:
            assert "does not divide the channels" in str(e), e
    assert not any(name.startswith("higherpose") for name in sys.modules), "higherpose was imported"

    module, _ = torch._C._dispatch_pystub("higherpose::ae_group", "")
    assert torch._C._dispatch_pystub("higherpose::linear_sum_assignment", "")[0] == module
    importlib.import_module(module)
    with FakeTensorMode(shape_env=ShapeEnv()):
        h, t = torch.empty(2, 14, 32, 24), torch.empty(2, 14, 32, 24, 2)
        v, x, y, pt = ops.heatmap_peaks(h, t, 5, 30)
        poses, scores, counts = ops.ae_group(h, t, v, x, y, pt, list(range(14)), 0.1, 1.0, True, False, 30, True,
                                             True)
        assert poses.shape[0] == 2 and tuple(poses.shape[2:]) == (14, 5) and counts.shape == (2,)
        rows, cols = ops.linear_sum_assignment(torch.empty(4, 6))
        assert rows.dtype == torch.int64
    assert "higherpose/_C" not in open("/proc/self/maps").read(), "the package loaded its own copy"
    print("FAKE-OK", module)
"""


def test_library_alone_fake_traces_every_op(cmake_library):
    done = _python(FAKE, cmake_library)
    assert done.returncode == 0 and "FAKE-OK higherpose.ops.group" in done.stdout, done.stdout + done.stderr


# The library and the package in one process: whichever comes first registers the ops, the other
# adds nothing (no "Only a single TORCH_LIBRARY" abort), and the ops work.
TOGETHER = """
    import sys
    import torch

    lib, order = sys.argv[1], sys.argv[2]
    if order == "library-first":
        torch.ops.load_library(lib)
        import higherpose.ops as ops
    else:
        import higherpose.ops as ops
        torch.ops.load_library(lib)
    maps = open("/proc/self/maps").read()
    assert "libhigherpose_ops" in maps
    assert ("higherpose/_C" in maps) == (order == "package-first"), "the package loaded a second copy"
    heatmaps = torch.zeros(1, 14, 16, 16)
    heatmaps[0, :, 3, 4] = 1.0
    poses, scores, counts = ops.ae_group(heatmaps, torch.zeros(1, 14, 16, 16, 1), adjust=False, refine=False)
    assert counts.tolist() == [1] and poses[0, 0, :, 0].eq(4).all(), poses
    print("TOGETHER-OK")
"""


@pytest.mark.parametrize("order", ["library-first", "package-first"])
def test_library_and_package_in_one_process(cmake_library, order):
    done = _python(TOGETHER, cmake_library, order)
    assert done.returncode == 0 and "TOGETHER-OK" in done.stdout, done.stdout + done.stderr


def test_cpp_example_builds_with_find_package_and_runs(cpp_examples):
    demo = run_checked([os.path.join(cpp_examples, "ops_demo")])
    assert "all checks passed" in demo.stdout and "FAIL" not in demo.stdout, demo.stdout
    by_name = run_checked([os.path.join(cpp_examples, "ops_by_name")])
    assert by_name.stdout.startswith("ok"), by_name.stdout
