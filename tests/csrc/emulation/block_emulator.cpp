// Fiber scheduler of the CUDA block emulator (see block_emulator.h).
#include "emulation/block_emulator.h"

#include <ucontext.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

namespace higherpose {
namespace emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;  // per emulated thread; kernels keep small frames

enum class Wait { kNone, kBlock, kWarp };

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  bool started = false, done = false;
  Wait wait = Wait::kNone;
  uint64_t barriers = 0;  // __syncthreads() calls made
  unsigned wait_mask = 0;  // warp exchange being waited for: mask and its call number
  uint64_t wait_call = 0;
};

// Per warp and mask: how many exchanges each lane made with that mask, and the last two values
// each lane deposited (lane l's k-th value sits in slot k & 1; a lane cannot deposit its
// (k+2)-th value before every lane of the mask has read the k-th, see warp_exchange).
constexpr int kMaxWords = 16;  // 32-bit words a lane may pass to one collective

struct MaskState {
  uint64_t calls[32] = {};
  uint32_t values[32][2][kMaxWords] = {};
};

struct Block {
  Dim3 block_idx, block_dim, grid_dim;
  std::vector<Fiber> fibers;
  std::vector<std::unordered_map<unsigned, MaskState>> warps;
  std::vector<char> shared;
  void* shared_aligned = nullptr;
  ucontext_t scheduler;
  int current = -1;
  const std::function<void()>* body = nullptr;
  std::exception_ptr error;
};

thread_local Block* active = nullptr;

Block& block() {
  if (active == nullptr || active->current < 0)
    throw std::logic_error("CUDA emulator: a device built-in was called outside an emulated kernel");
  return *active;
}

void yield() {
  Block& b = *active;
  Fiber& f = b.fibers[b.current];
  swapcontext(&f.context, &b.scheduler);
}

void fiber_entry() {
  Block& b = *active;
  try {
    (*b.body)();
  } catch (...) {
    if (!b.error) b.error = std::current_exception();
  }
  b.fibers[b.current].done = true;
  // uc_link returns to the scheduler.
}

bool ready(const Block& b, int t) {
  const Fiber& f = b.fibers[t];
  switch (f.wait) {
    case Wait::kNone:
      return true;
    case Wait::kBlock:
      for (const Fiber& o : b.fibers)
        if (!o.done && o.barriers < f.barriers) return false;
      return true;
    case Wait::kWarp: {
      const int warp = t / 32;
      const MaskState& s = b.warps[warp].at(f.wait_mask);
      for (int l = 0; l < 32; ++l)
        if (((f.wait_mask >> l) & 1u) && s.calls[l] < f.wait_call) return false;
      return true;
    }
  }
  return false;
}

std::string describe_deadlock(const Block& b) {
  std::ostringstream os;
  os << "CUDA emulator: deadlock in block " << b.block_idx.x << ":";
  int shown = 0;
  for (size_t t = 0; t < b.fibers.size() && shown < 8; ++t) {
    const Fiber& f = b.fibers[t];
    if (f.done) continue;
    os << " thread " << t << (f.wait == Wait::kBlock ? " waits at __syncthreads #" : " waits at warp exchange #")
       << (f.wait == Wait::kBlock ? f.barriers : f.wait_call);
    if (f.wait == Wait::kWarp) os << " (mask 0x" << std::hex << f.wait_mask << std::dec << ")";
    os << ";";
    ++shown;
  }
  return os.str();
}

void run_block(Block& b, unsigned threads, std::mt19937_64* rng) {
  std::vector<int> order(threads);
  for (unsigned t = 0; t < threads; ++t) order[t] = static_cast<int>(t);
  for (unsigned t = 0; t < threads; ++t) {
    Fiber& f = b.fibers[t];
    f.started = f.done = false;
    f.wait = Wait::kNone;
    f.barriers = 0;
  }
  for (auto& w : b.warps) w.clear();
  std::memset(b.shared_aligned, 0xff, b.shared.size() - 16);
  size_t remaining = threads;
  while (remaining > 0) {
    if (rng != nullptr) std::shuffle(order.begin(), order.end(), *rng);
    bool progress = false;
    for (int t : order) {
      Fiber& f = b.fibers[t];
      if (f.done || !ready(b, t)) continue;
      if (!f.started) {
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = f.stack.get();
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = &b.scheduler;
        makecontext(&f.context, fiber_entry, 0);
        f.started = true;
      }
      f.wait = Wait::kNone;
      b.current = t;
      swapcontext(&b.scheduler, &f.context);
      b.current = -1;
      progress = true;
      if (f.done) --remaining;
      if (b.error) std::rethrow_exception(b.error);
    }
    if (!progress) throw std::runtime_error(describe_deadlock(b));
  }
}

}  // namespace

void run_grid(unsigned blocks, unsigned threads, size_t shared_bytes, const std::function<void()>& body,
              uint64_t seed) {
  if (threads == 0 || threads > 1024)
    throw std::invalid_argument("CUDA emulator: threads per block must be in 1..1024");
  if (active != nullptr) throw std::logic_error("CUDA emulator: nested run_grid");
  Block b;
  b.block_dim.x = threads;
  b.grid_dim.x = blocks;
  b.body = &body;
  b.fibers.resize(threads);
  for (auto& f : b.fibers) f.stack.reset(new char[kStackBytes]);
  b.warps.resize((threads + 31) / 32);
  b.shared.resize(shared_bytes + 32);
  b.shared_aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(b.shared.data()) + 15) & ~uintptr_t(15));
  std::mt19937_64 rng(seed);
  struct Reset {
    ~Reset() { active = nullptr; }
  } reset;
  active = &b;
  for (unsigned i = 0; i < blocks; ++i) {
    b.block_idx.x = i;
    run_block(b, threads, seed != 0 ? &rng : nullptr);
  }
}

Dim3 thread_idx() {
  Dim3 d;
  d.x = static_cast<unsigned>(block().current);
  return d;
}
Dim3 block_idx() { return block().block_idx; }
Dim3 block_dim() { return block().block_dim; }
Dim3 grid_dim() { return block().grid_dim; }
void* dynamic_shared() { return block().shared_aligned; }

void sync_threads() {
  Block& b = block();
  Fiber& f = b.fibers[b.current];
  ++f.barriers;
  f.wait = Wait::kBlock;
  yield();
}

namespace {

// Deposits the caller's words, waits until every lane of `mask` has made the same call, and
// returns the slot of that call (lane l's words are state.values[l][slot]).
std::pair<const MaskState*, int> rendezvous(unsigned mask, const uint32_t* words, int n) {
  Block& b = block();
  const int t = b.current, lane = t % 32, warp = t / 32;
  if (((mask >> lane) & 1u) == 0)
    throw std::logic_error("CUDA emulator: a lane called a warp collective with a mask that excludes it");
  const unsigned warp_threads = std::min<unsigned>(32, b.block_dim.x - 32 * warp);
  if (warp_threads < 32 && (mask >> warp_threads) != 0)
    throw std::logic_error("CUDA emulator: warp collective mask names lanes beyond the block");
  if (n < 1 || n > kMaxWords) throw std::logic_error("CUDA emulator: too many words for a warp collective");
  MaskState& s = b.warps[warp][mask];
  const uint64_t call = ++s.calls[lane];
  std::memcpy(s.values[lane][call & 1], words, sizeof(uint32_t) * n);
  Fiber& f = b.fibers[t];
  f.wait = Wait::kWarp;
  f.wait_mask = mask;
  f.wait_call = call;
  yield();
  // Every lane of the mask has now made its call-th collective with this mask.
  return {&b.warps[warp].at(mask), static_cast<int>(call & 1)};
}

}  // namespace

uint32_t warp_exchange(unsigned mask, uint32_t value, int src_lane) {
  if (src_lane < 0 || src_lane >= 32) throw std::logic_error("CUDA emulator: shuffle source lane out of range");
  const auto [state, slot] = rendezvous(mask, &value, 1);
  if (((mask >> src_lane) & 1u) == 0) return value;  // CUDA: undefined; keep the caller's own value
  return state->values[src_lane][slot][0];
}

void warp_allgather(const uint32_t* words, int n, uint32_t* gathered) {
  const auto [state, slot] = rendezvous(0xffffffffu, words, n);
  for (int l = 0; l < 32; ++l) std::memcpy(gathered + l * n, state->values[l][slot], sizeof(uint32_t) * n);
}

}  // namespace emu
}  // namespace higherpose
