// The C++ API of higherpose's operators: each function calls torch.ops.higherpose.<op> through
// the dispatcher, so it runs the CPU, CUDA, Meta or autograd kernel its inputs ask for, exactly as
// the Python API does. Installed with the CMake library (find_package(higherpose), target
// higherpose::ops); the semantics of each op are documented with its Python wrapper in
// higherpose/ops/ and its schema in csrc/ops.cpp.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

namespace higherpose {

// Local-maximum suppression + top-k + tag gather. heatmaps [N, J, H, W], tags [N, J, H, W, T]
// -> values [N, J, k], x, y [N, J, k] (int64), peak_tags [N, J, k, T].
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> heatmap_peaks(const at::Tensor& heatmaps,
                                                                         const at::Tensor& tags,
                                                                         int64_t kernel, int64_t k);

// Associative-embedding grouping (HigherHRNet's parser) of the peaks above.
// -> poses [N, P, J, 3 + T] (x, y, value, tags), scores [N, P], counts [N] (int64).
std::tuple<at::Tensor, at::Tensor, at::Tensor> ae_group(
    const at::Tensor& heatmaps, const at::Tensor& tags, const at::Tensor& peak_values, const at::Tensor& peak_x,
    const at::Tensor& peak_y, const at::Tensor& peak_tags, const std::vector<int64_t>& joint_order,
    double detection_threshold, double tag_threshold, bool use_detection_val, bool ignore_too_much,
    int64_t max_people, bool adjust, bool refine);

// Minimum-cost rectangular assignment (scipy.optimize.linear_sum_assignment's interface and ties).
std::tuple<at::Tensor, at::Tensor> linear_sum_assignment(const at::Tensor& cost);

// Multi-head attention inside windows of image-layout q, k, v [B, H, W, heads * d]; differentiable.
// pad_mode "zeros" (padded positions are keys/values k_pad / v_pad) or "mask".
at::Tensor window_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            std::vector<int64_t> window, int64_t num_heads, double scale,
                            std::vector<int64_t> offset, std::string_view pad_mode = "zeros",
                            const std::optional<at::Tensor>& k_pad = std::nullopt,
                            const std::optional<at::Tensor>& v_pad = std::nullopt,
                            const std::optional<at::Tensor>& rel_bias = std::nullopt);

}  // namespace higherpose
