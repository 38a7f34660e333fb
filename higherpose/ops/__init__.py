"""The compiled operators of higherpose, with documented Python wrappers.

Importing this package loads `higherpose._C` (which registers `torch.ops.higherpose.*`, with C++
Meta kernels for the ops whose output shapes follow from their inputs) unless another copy of the
operator library (the CMake build, libhigherpose_ops.so) is already loaded, and the Python fake
kernels of the grouping ops, so that `torch.compile(fullgraph=True)` traces through every op. It
imports no model, data or config code, so other repositories can depend on it alone. `higherpose.ops.reference`
holds a pure-PyTorch reference of every op, which the tests hold the kernels to.
"""
from ._library import cuda_compiled, load_library

load_library()

from .peaks import heatmap_peaks  # noqa: E402
from .group import ae_group, default_joint_order, linear_sum_assignment  # noqa: E402,F401
from .window_attention import centre_offset, window_attention, window_attention_kernel  # noqa: E402

__all__ = ["heatmap_peaks", "ae_group", "linear_sum_assignment", "window_attention", "window_attention_kernel",
           "centre_offset", "cuda_compiled", "load_library"]
