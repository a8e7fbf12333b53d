// io_uring setup, submission and completion through raw syscalls (see io_uring.h).
#include "io_uring.h"

#include <errno.h>
#include <linux/io_uring.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace flexinfer {
namespace io {

namespace {

int sysSetup(unsigned entries, io_uring_params* p) { return static_cast<int>(syscall(__NR_io_uring_setup, entries, p)); }

int sysEnter(int fd, unsigned toSubmit, unsigned minComplete, unsigned flags) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, toSubmit, minComplete, flags, nullptr, 0));
}

template <class T>
T* at(void* base, uint32_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

}  // namespace

Uring::~Uring() { release(); }

void Uring::release() {
  if (sqes_) munmap(sqes_, sqesBytes_);
  if (cqMap_ && cqMap_ != sqMap_) munmap(cqMap_, cqMapBytes_);
  if (sqMap_) munmap(sqMap_, sqMapBytes_);
  if (fd_ >= 0) close(fd_);
  sqes_ = nullptr;
  cqMap_ = sqMap_ = nullptr;
  fd_ = -1;
}

bool Uring::init(unsigned entries, std::string* error) {
  io_uring_params p;
  memset(&p, 0, sizeof(p));
  int fd = sysSetup(entries, &p);
  if (fd < 0) {
    int err = errno;
    *error = std::string("io_uring_setup: ") + strerror(err) +
             (err == ENOSYS ? " (kernel without io_uring)"
              : err == EPERM ? " (refused: kernel.io_uring_disabled or a seccomp filter)"
                             : "");
    return false;
  }
  fd_ = fd;
  sqEntries_ = p.sq_entries;
  sqMapBytes_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cqMapBytes_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  const bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) sqMapBytes_ = cqMapBytes_ = sqMapBytes_ > cqMapBytes_ ? sqMapBytes_ : cqMapBytes_;
  auto fail = [&](const char* what) {
    *error = std::string(what) + ": " + strerror(errno);
    release();
    return false;
  };
  sqMap_ = mmap(nullptr, sqMapBytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
  if (sqMap_ == MAP_FAILED) {
    sqMap_ = nullptr;
    return fail("mmap of the io_uring SQ ring");
  }
  if (single) {
    cqMap_ = sqMap_;
  } else {
    cqMap_ = mmap(nullptr, cqMapBytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_CQ_RING);
    if (cqMap_ == MAP_FAILED) {
      cqMap_ = nullptr;
      return fail("mmap of the io_uring CQ ring");
    }
  }
  sqesBytes_ = p.sq_entries * sizeof(io_uring_sqe);
  void* sqes = mmap(nullptr, sqesBytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES);
  if (sqes == MAP_FAILED) return fail("mmap of the io_uring SQEs");
  sqes_ = static_cast<io_uring_sqe*>(sqes);
  sqHead_ = at<unsigned>(sqMap_, p.sq_off.head);
  sqTail_ = at<unsigned>(sqMap_, p.sq_off.tail);
  sqMask_ = *at<unsigned>(sqMap_, p.sq_off.ring_mask);
  sqArray_ = at<unsigned>(sqMap_, p.sq_off.array);
  cqHead_ = at<unsigned>(cqMap_, p.cq_off.head);
  cqTail_ = at<unsigned>(cqMap_, p.cq_off.tail);
  cqMask_ = *at<unsigned>(cqMap_, p.cq_off.ring_mask);
  cqes_ = at<io_uring_cqe>(cqMap_, p.cq_off.cqes);
  return true;
}

bool Uring::prepRead(int fd, void* buf, uint32_t len, uint64_t off, uint64_t tag, uint32_t rwFlags) {
  unsigned tail = *sqTail_;
  unsigned head = __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE);
  if (tail - head >= sqEntries_) return false;
  unsigned idx = tail & sqMask_;
  io_uring_sqe* sqe = &sqes_[idx];
  memset(sqe, 0, sizeof(*sqe));
  sqe->opcode = IORING_OP_READ;
  sqe->fd = fd;
  sqe->addr = reinterpret_cast<uint64_t>(buf);
  sqe->len = len;
  sqe->off = off;
  sqe->rw_flags = rwFlags;
  sqe->user_data = tag;
  sqArray_[idx] = idx;
  __atomic_store_n(sqTail_, tail + 1, __ATOMIC_RELEASE);
  toSubmit_++;
  return true;
}

int Uring::submitAndWait(unsigned minComplete) {
  for (;;) {
    int n = sysEnter(fd_, toSubmit_, minComplete, minComplete > 0 ? IORING_ENTER_GETEVENTS : 0);
    if (n >= 0) {
      toSubmit_ -= static_cast<unsigned>(n) < toSubmit_ ? static_cast<unsigned>(n) : toSubmit_;
      if (toSubmit_ == 0 || minComplete > 0) return 0;
      continue;  // part of the batch taken: submit the rest
    }
    if (errno == EINTR) continue;
    return -errno;
  }
}

void Uring::cqeAt(unsigned head, uint64_t* tag, int32_t* res) const {
  const io_uring_cqe& c = cqes_[head & cqMask_];
  *tag = c.user_data;
  *res = c.res;
}

}  // namespace io
}  // namespace flexinfer
