"""Loads the compiled operator library that registers `torch.ops.higherpose.*`.

`higherpose._C` is a plain shared library with no Python module init (the same sources build
the standalone CMake library `libhigherpose_ops.so`), so it is located with importlib and loaded
by torch. When the operators are already registered, because the process loaded the CMake library
first (a C++ program embedding Python, or `torch.ops.load_library(...)` before this import), that
copy is used and `_C` is not loaded; the libraries' own registration follows the same rule
(csrc/registration.h), so either order works. The environment variable HIGHERPOSE_OPS_LIBRARY
names another build of the library to load instead of `_C` (the CMake library, or the sanitizer
build of tools/check_sanitizers.sh).
"""
import importlib.machinery
import os

import torch

_LOADED = False


def library_path():
    """Path of the built `_C` shared library, or None when the package was not built."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    finder = importlib.machinery.FileFinder(
        here, (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES))
    spec = finder.find_spec("_C")
    return spec.origin if spec is not None else None


def operators_registered():
    """True when some copy of the operator library has registered `torch.ops.higherpose`."""
    return bool(torch._C._jit_get_schemas_for_operator("higherpose::heatmap_peaks"))


def load_library():
    """Load `higherpose._C` once, unless the operators are registered already."""
    global _LOADED
    if _LOADED:
        return
    if not operators_registered():
        path = os.environ.get("HIGHERPOSE_OPS_LIBRARY") or library_path()
        if path is None:
            raise ImportError(
                "higherpose's compiled operators are not built. Install with "
                "`pip install --no-build-isolation -e .` (or run `python setup.py build_ext --inplace`).")
        if not os.path.isfile(path):
            raise ImportError(f"HIGHERPOSE_OPS_LIBRARY names a missing file: {path}")
        torch.ops.load_library(path)
    _LOADED = True


def cuda_compiled():
    """True when the library was built with its CUDA kernels."""
    load_library()
    return torch._C._dispatch_has_kernel_for_dispatch_key("higherpose::heatmap_peaks", "CUDA")
