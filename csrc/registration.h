// One registration story for the two builds of these sources, the Python package's
// higherpose._C and the CMake library libhigherpose_ops.so: whichever copy is loaded first
// registers the `higherpose` operators, and a later copy registers nothing. So a process may load
// both, in either order (a C++ program linked to the library that embeds Python and imports
// higherpose.ops; a script that loads the library and then imports the package), instead of
// torch aborting on a second TORCH_LIBRARY(higherpose). Every file registers through the macros
// below instead of TORCH_LIBRARY / TORCH_LIBRARY_IMPL.
#pragma once
#include <torch/library.h>

#include <cstdint>
#include <optional>

#if defined(__GNUC__)
#define HIGHERPOSE_HIDDEN __attribute__((visibility("hidden")))
#else
#define HIGHERPOSE_HIDDEN
#endif

namespace higherpose {
namespace detail {

// True when this copy registers the namespace: decided once, at its first registration, by
// whether the ops already exist. Hidden, so each loaded copy asks its own function (a symbol
// with default visibility could be bound to the other copy's).
HIGHERPOSE_HIDDEN bool owns_registration();

// What TORCH_LIBRARY / TORCH_LIBRARY_IMPL build at load time, built only by the owning copy.
class Registration {
 public:
  Registration(torch::Library::Kind kind, std::optional<c10::DispatchKey> key, void (*init)(torch::Library&),
               const char* file, uint32_t line) {
    if (!owns_registration()) return;
    library_.emplace(kind, "higherpose", key, file, line);
    init(*library_);
  }

 private:
  std::optional<torch::Library> library_;  // keeps the registrations alive while the copy is loaded
};

}  // namespace detail
}  // namespace higherpose

// TORCH_LIBRARY(higherpose, m): the schemas (csrc/ops.cpp, once).
#define HIGHERPOSE_LIBRARY(m)                                                                   \
  static void higherpose_library_init(torch::Library&);                                         \
  static const ::higherpose::detail::Registration higherpose_library_registration(              \
      torch::Library::DEF, std::nullopt, &higherpose_library_init, __FILE__, __LINE__);          \
  void higherpose_library_init(torch::Library& m)

// HIGHERPOSE_LIBRARY_IMPL(key, m): kernels for one dispatch key.
#define HIGHERPOSE_LIBRARY_IMPL(key, m) HIGHERPOSE_LIBRARY_IMPL_UID(key, m, C10_UID)
#define HIGHERPOSE_LIBRARY_IMPL_UID(key, m, uid)                                                \
  static void C10_CONCATENATE(higherpose_impl_init_##key##_, uid)(torch::Library&);             \
  static const ::higherpose::detail::Registration C10_CONCATENATE(                              \
      higherpose_impl_registration_##key##_, uid)(                                              \
      torch::Library::IMPL, c10::DispatchKey::key,                                              \
      &C10_CONCATENATE(higherpose_impl_init_##key##_, uid), __FILE__, __LINE__);                \
  void C10_CONCATENATE(higherpose_impl_init_##key##_, uid)(torch::Library & m)
