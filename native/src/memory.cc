// Aligned buffers and memory locking.
//
// allocAligned(bytes, alignment) returns an ArrayBuffer over posix_memalign'd memory that is
// freed (and unlocked if it was locked) when the ArrayBuffer is collected. lockMemory /
// unlockMemory are advisory, as in llama.cpp's llama_mlock: a failure is reported as
// { locked: false, error } with a hint (RLIMIT_MEMLOCK), never thrown.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "memlock.h"
#include "registry.h"

std::string flexinfer::memlockHint(int err) {
  std::string msg = strerror(err);
  if (err == ENOMEM || err == EPERM || err == EAGAIN) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
      msg += " (RLIMIT_MEMLOCK is " + std::to_string(lim.rlim_cur / 1024) +
             " KiB; raise it with `ulimit -l unlimited` or a memlock entry in /etc/security/limits.conf)";
    }
  }
  return msg;
}

namespace {

using flexinfer::memlockHint;

// One record per live aligned allocation, so the finalizer knows whether it must munlock
// (free() does not unlock pages that stay in the heap) and lockMemory can report totals.
struct Allocation {
  size_t bytes;
  bool locked;
};

std::mutex gMutex;
std::unordered_map<uintptr_t, Allocation> gAllocations;
size_t gLockedBytes = 0;

size_t pageSize() {
  static size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return ps;
}

double toNumber(const Napi::Value& v) { return v.As<Napi::Number>().DoubleValue(); }

bool isWholeNonNegative(double x) { return x >= 0 && x <= 9007199254740991.0 && x == static_cast<double>(static_cast<uint64_t>(x)); }

void finalizeAllocation(Napi::Env env, void* data) {
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(gMutex);
    auto it = gAllocations.find(reinterpret_cast<uintptr_t>(data));
    if (it != gAllocations.end()) {
      bytes = it->second.bytes;
      if (it->second.locked) {
        munlock(data, bytes);
        gLockedBytes -= bytes;
      }
      gAllocations.erase(it);
    }
  }
  free(data);
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(bytes));
}

Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "allocAligned(bytes, alignment): bytes must be a number");
  }
  double bytesD = toNumber(info[0]);
  double alignD = info.Length() >= 2 && info[1].IsNumber() ? toNumber(info[1]) : 4096;
  if (!isWholeNonNegative(bytesD)) {
    throw Napi::RangeError::New(env, "allocAligned: bytes must be a non-negative integer, got " + std::to_string(bytesD));
  }
  if (!isWholeNonNegative(alignD) || alignD < sizeof(void*) || alignD > (1 << 30)) {
    throw Napi::RangeError::New(env, "allocAligned: alignment must be an integer in [8, 2^30], got " + std::to_string(alignD));
  }
  size_t alignment = static_cast<size_t>(alignD);
  if ((alignment & (alignment - 1)) != 0) {
    throw Napi::RangeError::New(env, "allocAligned: alignment must be a power of two, got " + std::to_string(alignment));
  }
  size_t bytes = static_cast<size_t>(bytesD);
  // A zero-length request still gets a real allocation so every buffer has a unique pointer.
  size_t allocBytes = bytes == 0 ? alignment : bytes;
  void* ptr = nullptr;
  int rc = posix_memalign(&ptr, alignment, allocBytes);
  if (rc != 0 || ptr == nullptr) {
    throw Napi::Error::New(env, "allocAligned: cannot allocate " + std::to_string(bytes) + " bytes aligned to " +
                                    std::to_string(alignment) + ": " + strerror(rc));
  }
  {
    std::lock_guard<std::mutex> lock(gMutex);
    gAllocations[reinterpret_cast<uintptr_t>(ptr)] = Allocation{allocBytes, false};
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(allocBytes));
  return Napi::ArrayBuffer::New(env, ptr, bytes, finalizeAllocation);
}

// The record of the allocation that starts at the buffer's data pointer, or null when the
// buffer is not ours (then lock/unlock work on its page-rounded range without bookkeeping).
Allocation* findAllocation(void* data) {
  auto it = gAllocations.find(reinterpret_cast<uintptr_t>(data));
  return it == gAllocations.end() ? nullptr : &it->second;
}

Napi::ArrayBuffer bufferArg(const Napi::CallbackInfo& info, const char* fn) {
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + "(buffer): buffer must be an ArrayBuffer from allocAligned");
  }
  return info[0].As<Napi::ArrayBuffer>();
}

Napi::Value LockMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer buf = bufferArg(info, "lockMemory");
  Napi::Object result = Napi::Object::New(env);
  void* data = buf.Data();
  size_t bytes = buf.ByteLength();
  if (bytes == 0 || data == nullptr) {
    result.Set("locked", true);
    return result;
  }
  std::lock_guard<std::mutex> lock(gMutex);
  Allocation* a = findAllocation(data);
  if (a != nullptr && a->locked) {
    result.Set("locked", true);
    return result;
  }
  if (mlock(data, bytes) != 0) {
    result.Set("locked", false);
    result.Set("error", "mlock of " + std::to_string(bytes) + " bytes failed: " + memlockHint(errno));
    return result;
  }
  if (a != nullptr) {
    a->locked = true;
    gLockedBytes += a->bytes;
  }
  result.Set("locked", true);
  return result;
}

Napi::Value UnlockMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer buf = bufferArg(info, "unlockMemory");
  void* data = buf.Data();
  size_t bytes = buf.ByteLength();
  if (bytes == 0 || data == nullptr) return env.Undefined();
  std::lock_guard<std::mutex> lock(gMutex);
  Allocation* a = findAllocation(data);
  if (a != nullptr && !a->locked) return env.Undefined();
  munlock(data, bytes);
  if (a != nullptr) {
    a->locked = false;
    gLockedBytes -= a->bytes;
  }
  return env.Undefined();
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  std::lock_guard<std::mutex> lock(gMutex);
  double allocated = 0;
  for (const auto& kv : gAllocations) allocated += static_cast<double>(kv.second.bytes);
  o.Set("alignedBytes", allocated);
  o.Set("alignedBuffers", static_cast<double>(gAllocations.size()));
  o.Set("lockedBytes", static_cast<double>(gLockedBytes));
  struct rlimit lim;
  if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0) {
    o.Set("memlockLimit", lim.rlim_cur == RLIM_INFINITY ? -1.0 : static_cast<double>(lim.rlim_cur));
  }
  o.Set("pageSize", static_cast<double>(pageSize()));
  return o;
}

// adviseHugePages(buffer): madvise(MADV_HUGEPAGE) over the buffer's 2 MiB-aligned part, before
// its first touch. Best effort: false where the kernel refuses (THP off, not Linux).
// Why: on this VM the first CPU access of each freshly allocated 4 KiB page costs 2-14 us
// (also after an O_DIRECT read or mlock filled it), paid inside the first tokens' matmuls when
// weights are read into fresh memory; 2 MiB pages pay it once per 512 pages (measured, 512 MiB
// read O_DIRECT then scanned: first scan 910 ms on 4 KiB pages, 6 ms on 2 MiB pages).
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer buf = bufferArg(info, "adviseHugePages");
  const uintptr_t huge = 2u << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(buf.Data()) + huge - 1) & ~(huge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(buf.Data()) + buf.ByteLength()) & ~(huge - 1);
  bool ok = false;
#ifdef MADV_HUGEPAGE
  ok = end > begin && madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0;
#endif
  return Napi::Boolean::New(info.Env(), ok);
}

Napi::Value BufferAddress(const Napi::CallbackInfo& info) {
  Napi::ArrayBuffer buf = bufferArg(info, "bufferAddress");
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(buf.Data())));
}

}  // namespace

FLEXINFER_MODULE(memory) {
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned));
  exports.Set("lockMemory", Napi::Function::New(env, LockMemory));
  exports.Set("unlockMemory", Napi::Function::New(env, UnlockMemory));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats));
  exports.Set("bufferAddress", Napi::Function::New(env, BufferAddress));
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages));
}
