// Runs each higherpose operator through its C++ API on inputs whose answer is known by
// construction, and checks it: heatmap peaks at planted maxima, two planted persons grouped by
// their tags, window attention equal to plain softmax attention over one window (forward and
// gradient), and shapes from the Meta kernels. Prints one line per check; exits 1 on a mismatch.
#include <higherpose/ops.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

// Two peaks of height 1 and 0.5 on every joint map; the tags say which person a peak belongs to.
void check_peaks_and_grouping() {
  const int64_t joints = 14, size = 32;
  auto heatmaps = torch::zeros({1, joints, size, size});
  auto tags = torch::zeros({1, joints, size, size, 1});
  for (int64_t j = 0; j < joints; ++j) {
    heatmaps.index_put_({0, j, 4 + j, 5}, 1.0);    // person A: column 5, tag 0
    heatmaps.index_put_({0, j, 4 + j, 25}, 0.5);   // person B: column 25, tag 3
    tags.index_put_({0, j, 4 + j, 25, 0}, 3.0);
  }
  auto [values, x, y, peak_tags] = higherpose::heatmap_peaks(heatmaps, tags, /*kernel=*/5, /*k=*/4);
  expect(values.sizes() == torch::IntArrayRef({1, joints, 4}), "heatmap_peaks: values are [N, J, k]");
  expect(x[0][3][0].item<int64_t>() == 5 && y[0][3][0].item<int64_t>() == 7 &&
             x[0][3][1].item<int64_t>() == 25 && peak_tags[0][3][1][0].item<float>() == 3.0f,
         "heatmap_peaks: the planted maxima, strongest first, with their tags");
  // A 2 x 2 map with one local maximum (3 x 3 suppression): the other two slots are empty.
  auto [v1, x1, y1, t1] = higherpose::heatmap_peaks(torch::arange(4.0).reshape({1, 1, 2, 2}),
                                                    torch::zeros({1, 1, 2, 2, 1}), 3, 3);
  expect(v1[0][0][0].item<float>() == 3.0f && std::isinf(v1[0][0][2].item<float>()) &&
             x1[0][0][1].item<int64_t>() == -1 && y1[0][0][2].item<int64_t>() == -1,
         "heatmap_peaks: slots beyond the peaks are -inf / -1");

  std::vector<int64_t> order(joints);
  for (int64_t j = 0; j < joints; ++j) order[j] = j;
  auto [poses, scores, counts] = higherpose::ae_group(heatmaps, tags, values, x, y, peak_tags, order,
                                                      /*detection_threshold=*/0.1, /*tag_threshold=*/1.0,
                                                      /*use_detection_val=*/true, /*ignore_too_much=*/false,
                                                      /*max_people=*/4, /*adjust=*/false, /*refine=*/false);
  expect(counts[0].item<int64_t>() == 2, "ae_group: two persons");
  bool columns = true;
  for (int64_t j = 0; j < joints; ++j) {
    columns = columns && poses[0][0][j][0].item<float>() == 5.0f && poses[0][1][j][0].item<float>() == 25.0f;
  }
  expect(columns, "ae_group: every joint of each person in its own column");
}

// One 4 x 4 window covering the whole image, "mask" mode: plain multi-head softmax attention.
void check_window_attention() {
  torch::manual_seed(0);
  const int64_t heads = 2, d = 8, h = 4, w = 4;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).requires_grad(true);
  auto q = torch::randn({1, h, w, heads * d}, opts), k = torch::randn({1, h, w, heads * d}, opts);
  auto v = torch::randn({1, h, w, heads * d}, opts);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  auto out = higherpose::window_attention(q, k, v, {h, w}, heads, scale, {0, 0}, "mask");

  auto split = [&](const torch::Tensor& t) { return t.reshape({h * w, heads, d}).transpose(0, 1); };
  auto weights = torch::softmax(torch::matmul(split(q), split(k).transpose(1, 2)) * scale, -1);
  auto expected = torch::matmul(weights, split(v)).transpose(0, 1).reshape({1, h, w, heads * d});
  expect(torch::allclose(out, expected, 1e-9, 1e-9), "window_attention: equals softmax attention");

  auto grads = torch::autograd::grad({out.sum()}, {q, k, v});
  auto expected_grads = torch::autograd::grad({expected.sum()}, {q, k, v});
  bool same = true;
  for (size_t i = 0; i < grads.size(); ++i) same = same && torch::allclose(grads[i], expected_grads[i], 1e-9, 1e-9);
  expect(same, "window_attention: gradients of q, k, v equal softmax attention's");
}

void check_meta() {
  auto meta = torch::TensorOptions().device(torch::kMeta);
  auto [values, x, y, peak_tags] =
      higherpose::heatmap_peaks(torch::empty({2, 17, 128, 96}, meta), torch::empty({2, 17, 128, 96, 2}, meta), 5, 30);
  expect(values.is_meta() && peak_tags.sizes() == torch::IntArrayRef({2, 17, 30, 2}),
         "heatmap_peaks on meta tensors: shapes without data");
  auto q = torch::empty({2, 64, 48, 78}, meta);
  auto out = higherpose::window_attention(q, q, q, {7, 7}, 2, 0.16, {3, 3});
  expect(out.is_meta() && out.sizes() == q.sizes(), "window_attention on meta tensors: shapes without data");
}

}  // namespace

int main() {
  try {
    check_peaks_and_grouping();
    check_window_attention();
    check_meta();
  } catch (const std::exception& e) {
    std::printf("FAIL %s\n", e.what());
    return 1;
  }
  std::printf(failures == 0 ? "all checks passed\n" : "%d check(s) failed\n", failures);
  return failures == 0 ? 0 : 1;
}
