#include "threadpool.h"

#include <algorithm>

#include "registry.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
static inline void cpuRelax() { _mm_pause(); }
#else
static inline void cpuRelax() {}
#endif

namespace flexinfer {

// Spin iterations before a worker sleeps. ~50k pauses is tens of microseconds: long enough
// to bridge the gap between consecutive kernels of one forward pass, short enough that an
// idle pool goes to sleep almost at once.
static constexpr int kSpinIterations = 50000;

ThreadPool& ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  unsigned hc = std::thread::hardware_concurrency();
  int n = hc == 0 ? 1 : static_cast<int>(hc);
  numThreads_ = n;
  startWorkers(n - 1);
}

ThreadPool::~ThreadPool() { stopWorkers(); }

void ThreadPool::startWorkers(int numWorkers) {
  stopping_ = false;
  // Workers must start from the generation current NOW: a thread that read it only once
  // running could miss a job published before it got there and never take part (the caller
  // would then wait forever on pending_).
  const uint64_t start = generation_.load(std::memory_order_acquire);
  for (int i = 0; i < numWorkers; i++) workers_.emplace_back([this, i, start] { workerLoop(i + 1, start); });
}

void ThreadPool::stopWorkers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::setThreads(int n) {
  std::lock_guard<std::mutex> call(callMutex_);
  if (n <= 0) {
    unsigned hc = std::thread::hardware_concurrency();
    n = hc == 0 ? 1 : static_cast<int>(hc);
  }
  n = std::min(n, 256);
  if (n == numThreads_) return;
  stopWorkers();
  numThreads_ = n;
  startWorkers(n - 1);
}

void ThreadPool::runChunks(int thread) {
  const RangeFn& fn = *fn_;
  for (;;) {
    int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
    if (begin >= total_) break;
    int64_t end = std::min(total_, begin + chunk_);
    fn(begin, end, thread);
  }
}

void ThreadPool::workerLoop(int index, uint64_t seen) {
  for (;;) {
    // Spin, then sleep, until a new job (or stop) is published.
    int spins = 0;
    uint64_t gen;
    while ((gen = generation_.load(std::memory_order_acquire)) == seen && spins < kSpinIterations) {
      cpuRelax();
      spins++;
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stopping_) return;
    runChunks(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallelFor(int64_t n, int64_t grain, const RangeFn& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  std::lock_guard<std::mutex> call(callMutex_);
  const int numWorkers = static_cast<int>(workers_.size());
  if (numWorkers == 0 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  // Chunks: about 4 per thread for balance, never below the grain.
  int64_t chunk = std::max<int64_t>(grain, (n + numThreads_ * 4 - 1) / (numThreads_ * 4));
  fn_ = &fn;
  total_ = n;
  chunk_ = chunk;
  next_.store(0, std::memory_order_relaxed);
  pending_.store(numWorkers, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  runChunks(0);
  while (pending_.load(std::memory_order_acquire) != 0) cpuRelax();
  fn_ = nullptr;
}

}  // namespace flexinfer

FLEXINFER_MODULE(threadpool) {
  exports.Set("setThreads", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                Napi::Env e = info.Env();
                if (info.Length() < 1 || !info[0].IsNumber()) {
                  throw Napi::TypeError::New(e, "setThreads(n): n must be a number");
                }
                double n = info[0].As<Napi::Number>().DoubleValue();
                if (!(n >= 0 && n <= 256) || n != static_cast<int>(n)) {
                  throw Napi::RangeError::New(e, "setThreads(n): n must be an integer in [0, 256] (0 = all cores)");
                }
                flexinfer::ThreadPool::instance().setThreads(static_cast<int>(n));
                return e.Undefined();
              }));
  exports.Set("getThreads", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Napi::Number::New(info.Env(), flexinfer::ThreadPool::instance().threads());
              }));
}
