#!/usr/bin/env bash
# Builds the operator library with AddressSanitizer + UndefinedBehaviorSanitizer (gcc) and runs the
# op tests and the fuzz tests against it: an out-of-bounds access, a use after free or undefined
# behaviour in the C++ ops fails the run even where a normal build happens to return plausible
# numbers. The Python process gets the ASan runtime first (LD_PRELOAD) and loads the sanitized
# library instead of higherpose._C (HIGHERPOSE_OPS_LIBRARY). Before the tests, a canary with a
# deliberate out-of-bounds read must be caught, so a broken sanitizer set-up cannot pass silently.
# Usage: PYTHON=.venv/bin/python tools/check_sanitizers.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
build="${SANITIZER_BUILD:-build_sanitizers}"
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
asan_runtime="$(${CXX:-g++} -print-file-name=libasan.so)"
[ -e "$asan_runtime" ] || { echo "error: no ASan runtime for ${CXX:-g++} ($asan_runtime)" >&2; exit 2; }
# libstdc++ preloaded right after the runtime: ASan's __cxa_throw interceptor must find the real one
# at start-up (Python itself does not link libstdc++), or the first C++ exception aborts.
cxx_runtime="$(${CXX:-g++} -print-file-name=libstdc++.so)"

# The canary: the sanitizers must report a heap read one past the end.
canary="$(mktemp -d)"
trap 'rm -rf "$canary"' EXIT
printf '%s\n' '#include <cstdlib>' 'int main(int argc, char**) { int* a = new int[4]; int v = a[argc + 3]; delete[] a; return v & 0; }' \
  > "$canary/canary.cpp"
${CXX:-g++} $flags -O1 "$canary/canary.cpp" -o "$canary/canary"
if "$canary/canary" 2> "$canary/report.txt" || ! grep -qE "heap-buffer-overflow|runtime error: load" "$canary/report.txt"; then
  echo "error: AddressSanitizer did not catch the canary's out-of-bounds read" >&2
  cat "$canary/report.txt" >&2
  exit 1
fi
echo "sanitizers: the canary's out-of-bounds read is caught"

prefix="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" > /dev/null
cmake --build "$build" -j "${MAX_JOBS:-2}"
library="$(find "$PWD/$build" -maxdepth 1 -name 'libhigherpose_ops*.so' | head -n 1)"
nm -D "$library" | grep "__asan_init" > /dev/null || { echo "error: $library is not instrumented" >&2; exit 1; }

# detect_leaks=0: CPython and torch keep allocations alive at exit by design;
# allocator_may_return_null=1: an impossible allocation (a test asks for a huge k) fails as it does
# without ASan, so the op's own error is what the test sees. Every other ASan and UBSan report
# stops the process (exit code != 0) and fails the run; --capture=sys lets the report (written to
# file descriptor 2 by the runtime) reach the log instead of pytest's capture.
LD_PRELOAD="$asan_runtime $cxx_runtime" HIGHERPOSE_OPS_LIBRARY="$library" \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:alloc_dealloc_mismatch=0:allocator_may_return_null=1" \
  UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  "$PY" -m pytest -q -p no:cacheprovider --capture=sys \
    tests/test_peaks.py tests/test_group.py tests/test_hungarian.py tests/test_group_parser.py \
    tests/test_window_attention.py tests/test_window_attention_special_values.py tests/test_fuzz_ops.py \
    -k "not cuda_kernels and not emulated" "$@"
