// Persistent compute thread pool.
//
// parallelFor(n, grain, fn) splits [0, n) into chunks and runs fn(begin, end, thread) on the
// pool's threads and the calling thread; it returns when every chunk is done. Workers spin
// briefly after a job (kernels come in bursts of hundreds per token) and then sleep on a
// condition variable, so an idle pool costs no CPU.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flexinfer {

using RangeFn = std::function<void(int64_t begin, int64_t end, int thread)>;

class ThreadPool {
 public:
  static ThreadPool& instance();

  // Total threads that run a job, counting the caller. n <= 0 means hardware concurrency.
  void setThreads(int n);
  int threads() const { return numThreads_; }

  // Runs fn over [0, n) in chunks of at least `grain` items. Callers are serialized.
  void parallelFor(int64_t n, int64_t grain, const RangeFn& fn);

  ~ThreadPool();

 private:
  ThreadPool();
  void startWorkers(int numWorkers);
  void stopWorkers();
  void workerLoop(int index, uint64_t startGeneration);
  // Claims and runs (or, with run = false, only claims) chunks of `job` until none is left.
  void runChunks(int thread, uint32_t job, bool run);
  void chunkDone(int64_t numChunks);
  // Invalidates every stale claim on `job` before the next job's fields are written.
  void closeJob(uint32_t job);
  static constexpr uint64_t kClosedIndex = 0xffffffffull;

  std::mutex callMutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable finished_;  // the caller sleeps here when a job runs long
  std::vector<std::thread> workers_;
  int numThreads_ = 1;
  std::atomic<bool> stopping_{false};

  // Current job. Chunks are claimed by CAS on claim_ = (job id << 32) | next chunk index, where
  // the job id is the low 32 bits of the generation that published it.
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<const RangeFn*> fn_{nullptr};
  std::atomic<int64_t> total_{0};
  std::atomic<int64_t> chunk_{1};
  std::atomic<int64_t> numChunks_{0};
  std::atomic<int64_t> done_{0};  // chunks finished in the current job
};

// Convenience: ThreadPool::instance().parallelFor(...)
inline void parallelFor(int64_t n, int64_t grain, const RangeFn& fn) {
  ThreadPool::instance().parallelFor(n, grain, fn);
}

}  // namespace flexinfer
