// Finds higherpose's operators by name through PyTorch's dispatcher, the way a program that only
// knows the schemas (or TorchScript) does, and runs heatmap_peaks once. It references no symbol
// of libhigherpose_ops: the library is loaded (and registers the ops) only because
// higherpose::ops keeps it linked under -Wl,--as-needed. Exits 1 if an op is missing.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cstdio>

int main() {
  for (const char* name : {"higherpose::heatmap_peaks", "higherpose::ae_group", "higherpose::window_attention",
                           "higherpose::window_attention_forward", "higherpose::window_attention_backward",
                           "higherpose::linear_sum_assignment"}) {
    if (!c10::Dispatcher::singleton().findSchema({name, ""}).has_value()) {
      std::printf("FAIL %s is not registered (was libhigherpose_ops dropped by the linker?)\n", name);
      return 1;
    }
  }
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("higherpose::heatmap_peaks", "")
                .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                                  int64_t, int64_t)>();
  auto heatmaps = torch::zeros({1, 1, 9, 9});
  heatmaps.index_put_({0, 0, 2, 6}, 1.0);
  auto [values, x, y, tags] = op.call(heatmaps, torch::zeros({1, 1, 9, 9, 1}), 3, 1);
  const bool ok = x.item<int64_t>() == 6 && y.item<int64_t>() == 2 && values.item<float>() == 1.0f;
  std::printf("%s every op registered; heatmap_peaks by name found the planted peak\n", ok ? "ok  " : "FAIL");
  return ok ? 0 : 1;
}
