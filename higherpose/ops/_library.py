"""Loads the compiled operator library that registers `torch.ops.higherpose.*`.

`higherpose._C` is a plain shared library with no Python module init (the same sources build
the standalone CMake library), so it is located with importlib and loaded by torch.
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


def load_library():
    """Load `higherpose._C` once; its static initialisers register the ops with torch."""
    global _LOADED
    if _LOADED:
        return
    path = library_path()
    if path is None:
        raise ImportError(
            "higherpose's compiled operators are not built. Install with "
            "`pip install --no-build-isolation -e .` (or run `python setup.py build_ext --inplace`).")
    torch.ops.load_library(path)
    _LOADED = True


def cuda_compiled():
    """True when the library was built with its CUDA kernels."""
    load_library()
    return torch._C._dispatch_has_kernel_for_dispatch_key("higherpose::heatmap_peaks", "CUDA")
