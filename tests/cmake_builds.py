"""Building with CMake in tests: the operator library (installed as another project finds it) and the
C++ examples (examples/cpp) against that install. The session fixtures in conftest.py use these."""
import os
import shutil
import subprocess

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_checked(cmd, **kwargs):
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def cmake():
    found = shutil.which("cmake")
    if found is None:
        pytest.fail("cmake is not installed: the CMake library and the C++ examples cannot be built")
    return found


def generator():
    return ["-G", "Ninja"] if shutil.which("ninja") else []


def build_and_install_library(build, prefix):
    """CMakeLists.txt configured, built and installed into `prefix`; returns the prefix."""
    run_checked([cmake(), "-S", ROOT, "-B", build, f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 "-DCMAKE_BUILD_TYPE=Release"] + generator())
    run_checked([cmake(), "--build", build, "-j", "2"])
    run_checked([cmake(), "--install", build, "--prefix", prefix])
    return str(prefix)


def build_examples(install_prefix, build):
    """examples/cpp built against the installed package, linked with -Wl,--as-needed as on Ubuntu's
    toolchain (ops_by_name only works if higherpose::ops keeps the library); returns the build folder."""
    run_checked([cmake(), "-S", os.path.join(ROOT, "examples", "cpp"), "-B", build,
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path};{install_prefix}", "-DCMAKE_BUILD_TYPE=Release",
                 "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--as-needed"] + generator())
    run_checked([cmake(), "--build", build, "-j", "2"])
    return str(build)
