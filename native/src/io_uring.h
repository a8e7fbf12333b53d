// A minimal io_uring through raw syscalls (no liburing): one submission queue, one completion
// queue, reads only. The caller owns all threading: one thread prepares, submits and reaps.
//
//   Uring ring;
//   if (!ring.init(64, &why)) { /* fall back: the kernel refused (ENOSYS, EPERM, disabled) */ }
//   ring.prepRead(fd, buf, len, off, tag);      // fills an SQE (false when the SQ is full)
//   ring.submitAndWait(1);                      // io_uring_enter: submit, wait for >= 1 CQE
//   ring.reap([](uint64_t tag, int32_t res) { ... });   // res = bytes or -errno
#pragma once
#include <cstdint>
#include <string>

struct io_uring_sqe;
struct io_uring_cqe;

namespace flexinfer {
namespace io {

class Uring {
 public:
  Uring() = default;
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;
  ~Uring();

  // Sets up a ring of at least `entries` SQEs. False (with *error) when the kernel refuses.
  bool init(unsigned entries, std::string* error);
  bool ready() const { return fd_ >= 0; }
  unsigned entries() const { return sqEntries_; }

  // Prepares an IORING_OP_READ of `len` bytes at `off` into `buf` (rwFlags: preadv2's RWF_*
  // flags); false when the SQ is full.
  bool prepRead(int fd, void* buf, uint32_t len, uint64_t off, uint64_t tag, uint32_t rwFlags = 0);
  // Submits the prepared SQEs and waits for at least `minComplete` completions (0: no wait).
  // Returns 0, or -errno (EINTR is retried; EAGAIN/EBUSY returned: reap, then call again).
  int submitAndWait(unsigned minComplete);
  // Calls fn(tag, res) for every completion available now; returns how many.
  template <class F>
  unsigned reap(F&& fn) {
    unsigned n = 0;
    unsigned head = *cqHead_;
    for (;;) {
      unsigned tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
      if (head == tail) break;
      uint64_t tag;
      int32_t res;
      cqeAt(head, &tag, &res);
      head++;
      __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);  // the slot is free before fn runs
      fn(tag, res);
      n++;
    }
    return n;
  }

 private:
  void cqeAt(unsigned head, uint64_t* tag, int32_t* res) const;
  void release();

  int fd_ = -1;
  unsigned sqEntries_ = 0;
  unsigned toSubmit_ = 0;
  // SQ ring
  void* sqMap_ = nullptr;
  size_t sqMapBytes_ = 0;
  unsigned* sqHead_ = nullptr;
  unsigned* sqTail_ = nullptr;
  unsigned sqMask_ = 0;
  unsigned* sqArray_ = nullptr;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqesBytes_ = 0;
  // CQ ring (the same mapping as the SQ ring with IORING_FEAT_SINGLE_MMAP)
  void* cqMap_ = nullptr;
  size_t cqMapBytes_ = 0;
  unsigned* cqHead_ = nullptr;
  unsigned* cqTail_ = nullptr;
  unsigned cqMask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
};

}  // namespace io
}  // namespace flexinfer
