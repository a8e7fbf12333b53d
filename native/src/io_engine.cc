// The streaming I/O engine: see io_engine.h.
#include "io_engine.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "io.h"
#include "io_uring.h"

namespace flexinfer {
namespace io {

uint64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

// Latency histogram: 8 buckets per doubling from 1 us (bucket b covers [2^(b/8), 2^((b+1)/8)) us).
constexpr int kBucketsPerOctave = 8;
constexpr int kLatencyBuckets = 30 * kBucketsPerOctave;  // up to ~2^30 us = 18 minutes
constexpr uint64_t kWakeTag = ~0ull;

// preadv2 / io_uring flag: read through the page cache, then drop the pages (Linux 6.14+,
// include/uapi/linux/fs.h; older headers lack it). Older kernels and file systems without it
// answer EOPNOTSUPP.
#ifndef RWF_DONTCACHE
#define RWF_DONTCACHE 0x00000080
#endif

bool refusedFlag(int64_t res) { return res == -EOPNOTSUPP || res == -EINVAL; }

std::string errnoName(int err) {
  const char* n = strerrorname_np(err);
  return n ? n : ("errno " + std::to_string(err));
}

FileIdentity identityOf(const struct stat& st) {
  FileIdentity id;
  id.dev = static_cast<uint64_t>(st.st_dev);
  id.ino = static_cast<uint64_t>(st.st_ino);
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtimeSec = st.st_mtim.tv_sec;
  id.mtimeNsec = st.st_mtim.tv_nsec;
  return id;
}

}  // namespace

IoEngine::IoEngine(const std::string& path, const EngineOptions& o)
    : path_(path), dropCache_(o.dropCache), dontCache_(o.dontCache), pieceBytes_(o.pieceBytes), maxDepth_(std::max(1u, o.maxDepth)) {
  if (pieceBytes_ < kDirectAlign || pieceBytes_ % kDirectAlign != 0 || pieceBytes_ > kMaxReadChunk) {
    throw std::invalid_argument("pieceBytes must be a multiple of 4096 in [4096, 64 MiB], got " + std::to_string(pieceBytes_));
  }
  depth_ = std::min(std::max(1u, o.depth), maxDepth_);
  useDirect_ = o.direct;
  bufferedFd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (bufferedFd_ < 0) throw std::runtime_error(errnoMessage("cannot open " + path, errno));
  struct stat st;
  if (fstat(bufferedFd_, &st) != 0) {
    int err = errno;
    ::close(bufferedFd_);
    throw std::runtime_error(errnoMessage("cannot stat " + path, err));
  }
  identity_ = identityOf(st);
  // No read-ahead on this fd only (f_mode FMODE_RANDOM): each buffered piece reads its own range.
  if (!o.readAhead && posix_fadvise(bufferedFd_, 0, 0, POSIX_FADV_RANDOM) == 0) readAhead_ = false;
  directFd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  if (directFd_ < 0) directError_ = errnoMessage("O_DIRECT open", errno);  // e.g. tmpfs: buffered only
  latencyBuckets_.assign(kLatencyBuckets, 0);
  if (o.backend != Backend::Threads) {
    auto ring = std::make_unique<Uring>();
    // Room for maxDepth pieces and the wake-up read.
    unsigned entries = 1;
    while (entries < maxDepth_ + 1) entries <<= 1;
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0) {
      uringError_ = errnoMessage("eventfd", errno);
    } else if (!ring->init(entries, &uringError_)) {
      ::close(efd);
    } else {
      uring_ = std::move(ring);
      wakeFd_ = efd;
    }
    if (!uring_ && o.backend == Backend::Uring) {
      close();
      throw std::runtime_error("io_uring requested but not available: " + uringError_);
    }
  }
  if (uring_) {
    threads_.emplace_back([this] { uringLoop(); });
  } else {
    for (unsigned i = 0; i < maxDepth_; i++) threads_.emplace_back([this] { threadLoop(); });
  }
}

IoEngine::~IoEngine() { close(); }

bool IoEngine::submit(uint32_t group, uint64_t fileOffset, uint8_t* dst, uint64_t length, uint64_t room) {
  uint64_t rounded = (length + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
  bool direct = useDirect_.load() && directFd_ >= 0 && fileOffset % kDirectAlign == 0 &&
                reinterpret_cast<uintptr_t>(dst) % kDirectAlign == 0 && rounded <= room;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw std::logic_error("the I/O engine is closed");
    GroupState& g = groups_[group];
    for (uint64_t done = 0; done < length;) {
      uint64_t len = std::min(pieceBytes_, length - done);
      uint64_t readLen = direct ? (len + kDirectAlign - 1) / kDirectAlign * kDirectAlign : len;
      queue_.push_back(Piece{group, direct, false, fileOffset + done, dst + done, len, readLen, 0});
      g.pending++;
      done += len;
    }
  }
  wake();
  return direct;
}

void IoEngine::wake() {
  if (uring_) {
    uint64_t one = 1;
    ssize_t rc = write(wakeFd_, &one, sizeof(one));
    (void)rc;  // a full counter (never here) still wakes the reader
  } else {
    workCv_.notify_all();
  }
}

bool IoEngine::wait(uint32_t group, uint64_t timeoutMs, GroupResult* out) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = groups_.find(group);
  if (it == groups_.end()) {
    *out = GroupResult{};
    return true;
  }
  auto done = [&] { return groups_[group].pending == 0; };
  if (timeoutMs == 0) {
    doneCv_.wait(lock, done);
  } else if (!doneCv_.wait_for(lock, std::chrono::milliseconds(timeoutMs), done)) {
    return false;
  }
  GroupState& g = groups_[group];
  out->bytes = g.bytes;
  out->failed = g.failed;
  out->error = g.error;
  groups_.erase(group);
  return true;
}

uint32_t IoEngine::pending(uint32_t group) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = groups_.find(group);
  return it == groups_.end() ? 0 : it->second.pending;
}

void IoEngine::setPath(bool direct, unsigned depth) {
  useDirect_ = direct;
  depth_ = std::min(std::max(1u, depth), maxDepth_);
  wake();
}

void IoEngine::trackInflight(int path, int delta, uint64_t now) {
  // Integral of the depth, and busy intervals per path and overall.
  st_.inflightNs += static_cast<uint64_t>(st_.inflight) * (now - lastChange_);
  lastChange_ = now;
  if (delta > 0) {
    if (pathInflight_[path]++ == 0) pathSince_[path] = now;
    if (st_.inflight++ == 0) anySince_ = now;
    st_.maxInflight = std::max(st_.maxInflight, st_.inflight);
  } else {
    if (--pathInflight_[path] == 0) st_.busyNs[path] += now - pathSince_[path];
    if (--st_.inflight == 0) st_.anyBusyNs += now - anySince_;
  }
}

void IoEngine::startPiece(Piece& p, uint64_t now) {
  p.startNs = now;
  p.dontCache = !p.direct && dontCache_.load();
  trackInflight(p.direct ? 1 : 0, +1, now);
}

void IoEngine::recordLatency(uint64_t ns) {
  double us = std::max(1.0, static_cast<double>(ns) / 1000.0);
  int b = static_cast<int>(std::log2(us) * kBucketsPerOctave);
  latencyBuckets_[std::min(std::max(b, 0), kLatencyBuckets - 1)]++;
  st_.latencyCount++;
}

void IoEngine::failGroup(uint32_t group, const ReadError& e) {
  GroupState& g = groups_[group];
  if (!g.failed) {
    g.failed = true;
    g.error = e;
  }
}

// res: bytes read (>= 0) or -errno. Short reads go back to the head of the queue (via retry).
void IoEngine::finishPiece(const Piece& p, int64_t res, uint64_t now, std::deque<Piece>* retry) {
  trackInflight(p.direct ? 1 : 0, -1, now);
  recordLatency(now - p.startNs);
  GroupState& g = groups_[p.group];
  if (res == -EINVAL && p.direct) {
    // This device wants another alignment: redo the piece buffered.
    st_.directFallbacks++;
    retry->push_back(Piece{p.group, false, false, p.fileOffset, p.dst, p.length, p.length, 0});
    return;
  }
  if (p.dontCache && refusedFlag(res)) {
    // This kernel or file system does not take RWF_DONTCACHE: stop asking, redo the piece.
    st_.dontCacheFallbacks++;
    if (dontCache_.exchange(false)) dontCacheError_ = errnoMessage("RWF_DONTCACHE refused", static_cast<int>(-res));
    retry->push_back(Piece{p.group, false, false, p.fileOffset, p.dst, p.length, p.length, 0});
    return;
  }
  if (res < 0) {
    int err = static_cast<int>(-res);
    failGroup(p.group, ReadError{errnoName(err), errnoMessage("read of " + std::to_string(p.readLength) + " bytes at offset " + std::to_string(p.fileOffset) + " failed", err), p.fileOffset});
  } else if (static_cast<uint64_t>(res) < p.length) {
    uint64_t got = static_cast<uint64_t>(res);
    // A direct read that stops off a 4096 boundary, or any read of 0 bytes, hit the end of the file.
    if (res == 0 || (p.direct && got % kDirectAlign != 0)) {
      struct stat st;
      std::string now = fstat(bufferedFd_, &st) == 0 ? " (the file is " + std::to_string(st.st_size) + " bytes now)" : "";
      failGroup(p.group, ReadError{"EOF", "unexpected end of file at offset " + std::to_string(p.fileOffset + got) + ": wanted " +
                                               std::to_string(p.length) + " bytes from offset " + std::to_string(p.fileOffset) + now,
                                   p.fileOffset + got});
    } else {
      st_.shortReads++;
      const int path = p.direct ? 1 : 0;
      st_.bytes[path] += got;
      retry->push_back(Piece{p.group, p.direct, false, p.fileOffset + got, p.dst + got, p.length - got, p.readLength - got, 0});
      return;
    }
  } else {
    const int path = p.direct ? 1 : 0;
    st_.bytes[path] += p.length;
    st_.reads[path]++;
    // RWF_DONTCACHE pieces' pages are dropped by the kernel.
    if (!p.direct && !p.dontCache && dropCache_) adviseDontNeed(bufferedFd_, p.fileOffset, p.length);
  }
  g.bytes += p.length;
  g.pending--;
}

void IoEngine::threadLoop() {
  for (;;) {
    Piece p;
    {
      std::unique_lock<std::mutex> lock(mu_);
      workCv_.wait(lock, [this] { return stopping_ || (!queue_.empty() && st_.inflight < depth_.load()); });
      if (stopping_) return;
      p = queue_.front();
      queue_.pop_front();
      startPiece(p, nowNs());
    }
    std::string error;
    int64_t res = 0;
    const int fd = p.direct ? directFd_ : bufferedFd_;
    // One pread (a short count is handled like io_uring's: requeued or EOF).
    for (;;) {
      ssize_t n;
      if (p.dontCache) {
        iovec iov{p.dst, static_cast<size_t>(p.readLength)};
        n = preadv2(fd, &iov, 1, static_cast<off_t>(p.fileOffset), RWF_DONTCACHE);
      } else {
        n = pread(fd, p.dst, static_cast<size_t>(p.readLength), static_cast<off_t>(p.fileOffset));
      }
      if (n < 0 && errno == EINTR) continue;
      res = n < 0 ? -errno : n;
      break;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::deque<Piece> retry;
      finishPiece(p, res, nowNs(), &retry);
      for (auto it = retry.rbegin(); it != retry.rend(); ++it) queue_.push_front(*it);
    }
    doneCv_.notify_all();
    workCv_.notify_all();
  }
}

void IoEngine::uringLoop() {
  Uring& ring = *uring_;
  std::vector<Piece> slots(maxDepth_);
  std::vector<unsigned> freeSlots;
  for (unsigned i = maxDepth_; i-- > 0;) freeSlots.push_back(i);
  bool wakeArmed = false;
  unsigned inRing = 0;  // pieces submitted and not completed
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Stop once nothing the kernel could still write to is in the ring. close() writes the
      // eventfd after setting stopping_, so an armed wake-up read always completes.
      if (stopping_ && inRing == 0 && !wakeArmed) break;
      if (!wakeArmed && !stopping_) wakeArmed = ring.prepRead(wakeFd_, &wakeBuf_, sizeof(wakeBuf_), 0, kWakeTag);
      const uint64_t now = nowNs();
      while (!stopping_ && !queue_.empty() && inRing < depth_.load() && !freeSlots.empty()) {
        unsigned s = freeSlots.back();
        Piece p = queue_.front();
        const int fd = p.direct ? directFd_ : bufferedFd_;
        const bool dontCache = !p.direct && dontCache_.load();
        if (!ring.prepRead(fd, p.dst, static_cast<uint32_t>(p.readLength), p.fileOffset, s, dontCache ? RWF_DONTCACHE : 0)) break;
        queue_.pop_front();
        freeSlots.pop_back();
        startPiece(p, now);
        p.dontCache = dontCache;
        slots[s] = p;
        inRing++;
      }
    }
    int rc = ring.submitAndWait(1);
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY) {
      // The ring itself failed: fail what is in it and what is queued; nothing can continue.
      std::lock_guard<std::mutex> lock(mu_);
      ReadError e{errnoName(-rc), errnoMessage("io_uring_enter failed", -rc), 0};
      const uint64_t now = nowNs();
      for (unsigned s = 0; s < maxDepth_; s++) {
        if (std::find(freeSlots.begin(), freeSlots.end(), s) != freeSlots.end()) continue;
        trackInflight(slots[s].direct ? 1 : 0, -1, now);
        failGroup(slots[s].group, e);
        groups_[slots[s].group].pending--;
      }
      for (const Piece& p : queue_) {
        failGroup(p.group, e);
        groups_[p.group].pending--;
      }
      queue_.clear();
      stopping_ = true;
      doneCv_.notify_all();
      return;
    }
    bool finished = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::deque<Piece> retry;
      const uint64_t now = nowNs();
      ring.reap([&](uint64_t tag, int32_t res) {
        if (tag == kWakeTag) {
          wakeArmed = false;
          return;
        }
        unsigned s = static_cast<unsigned>(tag);
        finishPiece(slots[s], res, now, &retry);
        freeSlots.push_back(s);
        inRing--;
        finished = true;
      });
      for (auto it = retry.rbegin(); it != retry.rend(); ++it) queue_.push_front(*it);
    }
    if (finished) doneCv_.notify_all();
  }
}

EngineStats IoEngine::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  EngineStats s = st_;
  const uint64_t now = nowNs();
  // Include the intervals still open.
  for (int p = 0; p < 2; p++) if (pathInflight_[p] > 0) s.busyNs[p] += now - pathSince_[p];
  if (st_.inflight > 0) s.anyBusyNs += now - anySince_;
  s.inflightNs += static_cast<uint64_t>(st_.inflight) * (now - lastChange_);
  s.queued = queue_.size();
  const double q[3] = {0.5, 0.9, 0.99};
  for (int k = 0; k < 3; k++) {
    uint64_t target = static_cast<uint64_t>(std::ceil(q[k] * static_cast<double>(st_.latencyCount)));
    uint64_t seen = 0;
    for (int b = 0; b < kLatencyBuckets && st_.latencyCount > 0; b++) {
      seen += latencyBuckets_[b];
      if (seen >= target) {
        s.latencyUs[k] = std::exp2(static_cast<double>(b + 1) / kBucketsPerOctave);  // the bucket's upper edge
        break;
      }
    }
  }
  return s;
}

std::string IoEngine::checkFile(std::string* detail) const {
  struct stat open, named;
  if (bufferedFd_ < 0 || fstat(bufferedFd_, &open) != 0) return "";
  const FileIdentity now = identityOf(open);
  if (now.size < identity_.size) {
    *detail = "the file went from " + std::to_string(identity_.size) + " to " + std::to_string(now.size) + " bytes";
    return "truncated";
  }
  if (now.size != identity_.size || now.mtimeSec != identity_.mtimeSec || now.mtimeNsec != identity_.mtimeNsec) {
    *detail = "its size or modification time changed";
    return "modified";
  }
  if (stat(path_.c_str(), &named) != 0) {
    *detail = errnoMessage("the path no longer names it", errno);
    return "deleted";
  }
  if (static_cast<uint64_t>(named.st_ino) != identity_.ino || static_cast<uint64_t>(named.st_dev) != identity_.dev) {
    *detail = "the path now names another file";
    return "replaced";
  }
  return "";
}

void IoEngine::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    stopping_ = true;
    for (const Piece& p : queue_) {  // dropped pieces fail their groups, so no wait() hangs
      failGroup(p.group, ReadError{"ECANCELED", "the I/O engine was closed before this read ran", p.fileOffset});
      groups_[p.group].pending--;
    }
    queue_.clear();
  }
  wake();
  workCv_.notify_all();
  doneCv_.notify_all();
  for (auto& t : threads_) t.join();  // the io_uring thread drains its ring first
  threads_.clear();
  uring_.reset();
  if (wakeFd_ >= 0) ::close(wakeFd_);
  if (bufferedFd_ >= 0) ::close(bufferedFd_);
  if (directFd_ >= 0) ::close(directFd_);
  wakeFd_ = bufferedFd_ = directFd_ = -1;
}

}  // namespace io
}  // namespace flexinfer
