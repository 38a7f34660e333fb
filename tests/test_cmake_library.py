"""The standalone CMake library: builds from CMakeLists.txt, loads with torch.ops.load_library in a
fresh process (without higherpose._C), and runs torch.ops.higherpose.heatmap_peaks correctly.

CI builds the library once beforehand and points HIGHERPOSE_CMAKE_LIB at the .so; without it
this test configures and builds it into a temporary folder (about a minute of 2-core CPU time).
"""
import glob
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cmake_library(tmp_path_factory):
    prebuilt = os.environ.get("HIGHERPOSE_CMAKE_LIB")
    if prebuilt:
        assert os.path.isfile(prebuilt), f"HIGHERPOSE_CMAKE_LIB points to a missing file: {prebuilt}"
        return prebuilt
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake is not installed: the standalone library cannot be built")
    build = tmp_path_factory.mktemp("build_cmake")
    configure = [cmake, "-S", ROOT, "-B", str(build), f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, [cmake, "--build", str(build), "-j", "2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    found = glob.glob(str(build / "libhigherpose_ops*.so"))
    assert len(found) == 1, f"expected one libhigherpose_ops*.so in {build}, found {found}"
    return found[0]


# Runs in a fresh interpreter: loads only the CMake library (never higherpose._C, which would
# register the same ops twice) and the reference module straight from its file.
CHECK = textwrap.dedent("""
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
    # Every schema of csrc/ops.cpp is in the library.
    for op in ("heatmap_peaks", "ae_group", "window_attention"):
        assert hasattr(torch.ops.higherpose, op), op
    print("CMAKE-LIBRARY-OK")
""")


def test_cmake_library_loads_and_runs_heatmap_peaks(cmake_library):
    reference_file = os.path.join(ROOT, "higherpose", "ops", "reference", "peaks.py")
    done = subprocess.run([sys.executable, "-c", CHECK, cmake_library, reference_file],
                          capture_output=True, text=True, timeout=300, cwd=os.path.dirname(cmake_library))
    assert done.returncode == 0 and "CMAKE-LIBRARY-OK" in done.stdout, done.stdout + done.stderr
