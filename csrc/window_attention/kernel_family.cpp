// The forced window-attention kernel family (kernel_family.h): read once from
// HIGHERPOSE_WINDOW_ATTENTION_KERNEL, changed by the op higherpose::set_window_attention_kernel.
// Present in every build (the op exists without CUDA too; only the CUDA kernels have families).
#include <cstdlib>
#include <mutex>
#include <string>

#include "registration.h"
#include "window_attention/kernel_family.h"

namespace higherpose {
namespace {

std::mutex forced_mutex;
bool forced_read = false;
std::optional<KernelFamily> forced;

// "" or "auto": the default table; otherwise a family name.
std::optional<KernelFamily> parse_choice(const std::string& name, const char* where) {
  if (name.empty() || name == "auto") return std::nullopt;
  return parse_kernel_family(name, where);
}

// Reads the environment variable the first time (an invalid value raises at every call until fixed).
void read_environment_once() {
  if (forced_read) return;
  const char* value = std::getenv("HIGHERPOSE_WINDOW_ATTENTION_KERNEL");
  forced = parse_choice(value != nullptr ? value : "", "HIGHERPOSE_WINDOW_ATTENTION_KERNEL");
  forced_read = true;
}

// Forces `family` ("rows", "tiles", "mma"; "" or "auto" = the default table) for the calls that
// follow; returns the previous setting ("auto" when none).
std::string set_window_attention_kernel(c10::string_view family) {
  std::lock_guard<std::mutex> lock(forced_mutex);
  read_environment_once();
  const std::optional<KernelFamily> next = parse_choice(std::string(family), "the kernel family");
  const std::string previous = forced ? kernel_family_name(*forced) : "auto";
  forced = next;
  return previous;
}

}  // namespace

std::optional<KernelFamily> forced_kernel_family() {
  std::lock_guard<std::mutex> lock(forced_mutex);
  read_environment_once();
  return forced;
}

// No tensor arguments: one kernel for every backend.
HIGHERPOSE_LIBRARY_IMPL(CompositeExplicitAutograd, m) {
  m.impl("set_window_attention_kernel", &set_window_attention_kernel);
}

}  // namespace higherpose
