// The streaming I/O engine (mechanism only; TypeScript decides what to read and when):
// a FIFO submission queue of large pieces, a fixed number of them in flight, and a
// completion side that counts each group's pieces (fio's engines, liburing's examples).
//
//   submit(group, fileOffset, dst, length, room)   one task -> pieces of <= pieceBytes
//       |
//   [ queue: piece piece piece ... ]  FIFO, so group g is read before group g + 1
//       |  up to `depth` pieces in flight
//   backend: io_uring (raw syscalls, one I/O thread submits and reaps; an eventfd read in the
//            ring wakes it when new pieces arrive)  or  `depth` threads doing pread
//       |
//   completion: group.pending--, short reads resubmitted, O_DIRECT EINVAL redone buffered,
//               buffered pieces' pages dropped (POSIX_FADV_DONTNEED), errors kept per group
//
// Buffered reads fetch exactly the pieces asked for when readAhead is off: POSIX_FADV_RANDOM
// on the engine's own buffered fd (the device's read-ahead, 8 MiB here, would otherwise read
// past each streamed tensor into resident ones: disk bytes and page-cache charge for nothing).
// dontCache reads buffered pieces with RWF_DONTCACHE (Linux 6.14+: the kernel drops the pages
// itself); a kernel or file system that refuses the flag (EOPNOTSUPP / EINVAL) gets the piece
// again without it, and the engine stops asking (dontCacheError says why).
//
// A piece goes O_DIRECT when the engine's path is direct and its file offset, memory address
// and room (length rounded up to 4096) allow it; otherwise a buffered read.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace flexinfer {
namespace io {

class Uring;

enum class Backend { Auto, Uring, Threads };

struct EngineOptions {
  bool direct = true;      // O_DIRECT for eligible pieces (the path can change later: setPath)
  bool dropCache = true;   // POSIX_FADV_DONTNEED after each buffered piece
  unsigned depth = 8;      // pieces in flight
  unsigned maxDepth = 32;  // the most setPath may ask for (threads backend: threads started)
  uint64_t pieceBytes = 1ull << 20;
  Backend backend = Backend::Auto;
  bool readAhead = true;   // false: POSIX_FADV_RANDOM on the buffered fd (no read-ahead)
  bool dontCache = false;  // RWF_DONTCACHE on buffered pieces (falls back without it)
};

// The first failure of a group: code is an errno name ("EIO"), "EOF" (the file ended before
// the range: truncated) or "ECANCELED" (the engine was closed first).
struct ReadError {
  std::string code;
  std::string message;
  uint64_t fileOffset = 0;
};

struct GroupResult {
  uint64_t bytes = 0;
  bool failed = false;
  ReadError error;
};

// Counters since open. Index 0 = buffered, 1 = direct.
struct EngineStats {
  uint64_t bytes[2] = {0, 0};
  uint64_t reads[2] = {0, 0};
  uint64_t busyNs[2] = {0, 0};  // wall time with >= 1 piece of that path in flight
  uint64_t anyBusyNs = 0;       // wall time with >= 1 piece in flight
  uint64_t inflightNs = 0;      // integral of pieces in flight over time (/ anyBusyNs = mean depth)
  uint64_t directFallbacks = 0;
  uint64_t dontCacheFallbacks = 0;  // buffered pieces the kernel refused RWF_DONTCACHE for, redone without
  uint64_t shortReads = 0;
  unsigned inflight = 0;
  unsigned maxInflight = 0;
  size_t queued = 0;
  // Piece latency (submit to completion) percentiles, microseconds.
  double latencyUs[3] = {0, 0, 0};  // p50, p90, p99
  uint64_t latencyCount = 0;
};

struct FileIdentity {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtimeSec = 0, mtimeNsec = 0;
};

class IoEngine {
 public:
  // Opens the file (buffered, and O_DIRECT when asked) and starts the backend. Throws
  // std::runtime_error when the file cannot be opened.
  IoEngine(const std::string& path, const EngineOptions& options);
  ~IoEngine();
  IoEngine(const IoEngine&) = delete;
  IoEngine& operator=(const IoEngine&) = delete;

  // Queues [fileOffset, fileOffset + length) into dst (with `room` bytes usable at dst).
  // Returns true when it will be read O_DIRECT. Throws std::logic_error after close().
  bool submit(uint32_t group, uint64_t fileOffset, uint8_t* dst, uint64_t length, uint64_t room);
  // Blocks until every piece of the group is done (true) or timeoutMs (> 0) passes (false).
  bool wait(uint32_t group, uint64_t timeoutMs, GroupResult* out);
  uint32_t pending(uint32_t group);
  // Path and depth for pieces taken from the queue from now on.
  void setPath(bool direct, unsigned depth);
  EngineStats stats();
  // Finishes pieces in flight, fails queued ones (ECANCELED), stops the backend, closes files.
  void close();

  const std::string& path() const { return path_; }
  uint64_t fileSize() const { return identity_.size; }
  const FileIdentity& identity() const { return identity_; }
  bool directAvailable() const { return directFd_ >= 0; }
  const std::string& directError() const { return directError_; }
  const char* backendName() const { return uring_ ? "io_uring" : "threads"; }
  const std::string& uringError() const { return uringError_; }
  bool direct() const { return useDirect_.load(); }
  unsigned depth() const { return depth_.load(); }
  unsigned maxDepth() const { return maxDepth_; }
  uint64_t pieceBytes() const { return pieceBytes_; }
  bool dropCache() const { return dropCache_; }
  // Whether the buffered fd reads ahead (false once POSIX_FADV_RANDOM was accepted).
  bool readAhead() const { return readAhead_; }
  // Whether buffered pieces are read with RWF_DONTCACHE now (false after the kernel refused it).
  bool dontCache() const { return dontCache_.load(); }
  std::string dontCacheError() {
    std::lock_guard<std::mutex> lock(mu_);
    return dontCacheError_;
  }
  // Compares the open file with what `path` names now: "" when unchanged, else "truncated",
  // "modified", "replaced" or "deleted" (with *detail).
  std::string checkFile(std::string* detail) const;

 private:
  struct Piece {
    uint32_t group;
    bool direct;
    bool dontCache;  // buffered with RWF_DONTCACHE (set when the piece starts)
    uint64_t fileOffset;
    uint8_t* dst;
    uint64_t length;      // bytes the caller wants
    uint64_t readLength;  // bytes asked of the kernel (direct: rounded up to 4096)
    uint64_t startNs;
  };
  struct GroupState {
    uint32_t pending = 0;
    uint64_t bytes = 0;
    bool failed = false;
    ReadError error;
  };

  void threadLoop();
  void uringLoop();
  // Under mu_: the piece leaves the queue / completes. res = bytes read or -errno.
  void startPiece(Piece& p, uint64_t now);
  void finishPiece(const Piece& p, int64_t res, uint64_t now, std::deque<Piece>* retry);
  void trackInflight(int path, int delta, uint64_t now);
  void failGroup(uint32_t group, const ReadError& e);
  void recordLatency(uint64_t ns);
  void wake();

  std::string path_;
  FileIdentity identity_;
  int bufferedFd_ = -1;
  int directFd_ = -1;
  std::string directError_;
  bool dropCache_ = true;
  bool readAhead_ = true;
  std::atomic<bool> dontCache_{false};
  std::string dontCacheError_;  // under mu_
  uint64_t pieceBytes_;
  unsigned maxDepth_;
  std::atomic<bool> useDirect_{true};
  std::atomic<unsigned> depth_{8};

  std::unique_ptr<Uring> uring_;
  std::string uringError_;
  int wakeFd_ = -1;
  uint64_t wakeBuf_ = 0;

  std::mutex mu_;
  std::condition_variable workCv_;  // threads backend: work or stop
  std::condition_variable doneCv_;  // a piece finished
  std::deque<Piece> queue_;
  std::unordered_map<uint32_t, GroupState> groups_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
  bool closed_ = false;

  // Stats, under mu_.
  EngineStats st_;
  unsigned pathInflight_[2] = {0, 0};
  uint64_t pathSince_[2] = {0, 0};
  uint64_t anySince_ = 0;
  uint64_t lastChange_ = 0;
  std::vector<uint64_t> latencyBuckets_;
};

uint64_t nowNs();

}  // namespace io
}  // namespace flexinfer
