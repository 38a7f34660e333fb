#!/usr/bin/env bash
# Compile-check every CUDA source against the installed torch's headers without a GPU or a
# CUDA build of torch: nvcc -c for sm_90 as C++17 (the GPU machine's torch 2.11 compiles as
# C++17). Only c10/cuda headers may be used (no cuBLAS/cuSPARSE headers are needed or present).
# With no arguments it also syntax-checks every csrc/**/*.cpp and tests/csrc/**/*.cpp (the test-only
# CUDA block emulator) as C++17 with the host compiler: the GPU machine's torch builds as C++17.
# Usage: tools/check_cuda_compile.sh [file.cu ...]   (default: every csrc/**/*.cu, then the .cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
[ -x "$NVCC" ] || NVCC="$(command -v nvcc)"
TORCH_INC="$("$PY" -c 'import torch.utils.cpp_extension as c; print(" ".join("-I" + p for p in c.include_paths()))')"
files=("$@")
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(find csrc -name '*.cu' | sort)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for f in "${files[@]}"; do
  echo "nvcc -c $f"
  # shellcheck disable=SC2086
  "$NVCC" -c "$f" -o "$out/$(basename "$f").o" -std=c++17 -arch=sm_90 -Icsrc $TORCH_INC \
    -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE -DHIGHERPOSE_WITH_CUDA --expt-relaxed-constexpr \
    -Xcompiler -fPIC -Xcompiler -Wno-c++20-extensions -w
done
echo "compiled ${#files[@]} CUDA source(s)"
if [ $# -eq 0 ]; then
  mapfile -t cpp < <(find csrc tests/csrc -name '*.cpp' | sort)
  for f in "${cpp[@]}"; do
    # shellcheck disable=SC2086
    "${CXX:-c++}" -std=c++17 -fsyntax-only -Icsrc -Itests/csrc $TORCH_INC -Wno-unknown-pragmas -w "$f"
  done
  echo "checked ${#cpp[@]} C++ source(s) as C++17"
fi
