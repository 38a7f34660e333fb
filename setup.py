"""Builds higherpose and its compiled operator library `higherpose._C`.

Install into an environment that already has PyTorch (torch is deliberately not a build
requirement, so pip never swaps the user's torch for another build):

    pip install --no-build-isolation -e .

C++ sources under csrc/ are always compiled. CUDA sources (*.cu) are compiled too when CUDA is
usable at build time, or when FORCE_CUDA=1 (e.g. building on a machine without a GPU);
TORCH_CUDA_ARCH_LIST selects the architectures. CUDA_HOME is read from the environment and
defaults to /usr/local/cuda when nvcc is there.
"""
import glob
import os

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _cuda_home():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home and os.path.exists("/usr/local/cuda/bin/nvcc"):
        home = "/usr/local/cuda"
    if home:
        # torch.utils.cpp_extension reads CUDA_HOME at import time: set it before importing.
        os.environ["CUDA_HOME"] = home
    return home


def _extensions():
    cuda_home = _cuda_home()
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    csrc = os.path.join(HERE, "csrc")
    cpp_sources = sorted(glob.glob(os.path.join(csrc, "**", "*.cpp"), recursive=True))
    cuda_sources = sorted(glob.glob(os.path.join(csrc, "**", "*.cu"), recursive=True))
    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    with_cuda = bool(cuda_sources) and (force_cuda or (torch.cuda.is_available() and cuda_home))

    # -O2 and no debug info: debug info triples compile time. No -std flag: torch's own
    # extension helper picks the standard matching the installed torch (C++17 on torch 2.11).
    # -Wno-unknown-pragmas: the CUDA kernels' `#pragma unroll` also compile as host C++ (emulator).
    cxx_flags = ["-O2", "-g0", "-Wno-unknown-pragmas"]
    extra = {"cxx": cxx_flags}
    sources = [os.path.relpath(s, HERE) for s in cpp_sources]
    define_macros = []
    if with_cuda:
        sources += [os.path.relpath(s, HERE) for s in cuda_sources]
        extra["nvcc"] = ["-O2", "-lineinfo", "--expt-relaxed-constexpr"]
        define_macros.append(("HIGHERPOSE_WITH_CUDA", None))
        ext_cls = CUDAExtension
    else:
        ext_cls = CppExtension
    return [
        ext_cls(
            "higherpose._C",
            sources,
            include_dirs=[csrc],
            define_macros=define_macros,
            extra_compile_args=extra,
        )
    ]


# What `import higherpose` and its tools need at run time (ranges: a library must fit into other
# environments; requirements.txt pins what CI installs). Training-only and test-only packages are
# the `train` and `dev` extras in pyproject.toml.
RUNTIME_REQUIREMENTS = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "yacs>=0.1.8",
    "PyYAML>=6.0",
    "json_tricks>=3.15",
    "tqdm>=4.60",
    "faster-coco-eval>=1.6",
    "pycocotools>=2.0.7",
]


def _torch_requirement():
    """The torch release this build links against: the compiled library only loads with it.
    A local build label (2.13.0+cpu, 2.11.0+cu130) matches too, so pip keeps the user's torch."""
    import torch

    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return f"torch=={major}.{minor}.*"


def _build_ext():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=True)


# Name, version, extras, console scripts and package data: pyproject.toml.
setup(
    install_requires=[_torch_requirement()] + RUNTIME_REQUIREMENTS,
    ext_modules=_extensions(),
    cmdclass={"build_ext": _build_ext()},
    zip_safe=False,
)
