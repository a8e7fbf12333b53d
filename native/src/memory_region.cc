// Reserved memory regions whose pages can be given back: the mechanism under the elastic
// memory pool (src/weights/arena.ts). Policy (what is resident, when memory moves between
// resident weights and KV chunks) lives in TypeScript.
//
//   region = mmap(PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
//   +---------+---------+---------+---------+----
//   | tensor a| tensor b|  (never touched)  | ...    address space only until written
//   +---------+---------+---------+---------+----
//     lock(a): mlock the pages (they are written first: mlock faults them in)
//     discard(b): munlock, then madvise(MADV_DONTNEED): the pages go back to the kernel
//                 (the cgroup's charge drops at once); the range reads as zeros afterwards
//
// Ranges are page-aligned (offset a multiple of the page size; the length is rounded up to
// whole pages, within the region). Locking is advisory as in memory.cc: a failure comes back
// as { locked: false, error } with the RLIMIT_MEMLOCK hint. Every region keeps one flag per
// page for "locked", so the process-wide locked total is exact whatever ranges callers pass.
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "memlock.h"
#include "registry.h"

namespace {

using flexinfer::memlockHint;

struct Region {
  uint8_t* base;
  size_t bytes;                 // mapped length (whole pages)
  std::vector<uint8_t> locked;  // one flag per page
  bool released = false;
};

std::mutex gMutex;
std::unordered_map<uintptr_t, Region*> gLive;  // live regions by base address
size_t gLockedBytes = 0;

size_t pageSize() {
  static size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return ps;
}

bool isWholeNonNegative(double x) { return x >= 0 && x <= 9007199254740991.0 && x == static_cast<double>(static_cast<uint64_t>(x)); }

double numberArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + name + " must be a number");
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!isWholeNonNegative(v)) {
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": " + name + " must be a non-negative integer, got " + std::to_string(v));
  }
  return v;
}

// Unmaps a region (caller holds gMutex) and drops its locked pages from the total.
void unmapRegion(Region* r) {
  if (r->released) return;
  for (uint8_t f : r->locked) gLockedBytes -= f ? pageSize() : 0;
  munmap(r->base, r->bytes);  // also unlocks
  gLive.erase(reinterpret_cast<uintptr_t>(r->base));
  r->released = true;
}

void finalizeRegion(Napi::Env, void*, Region* r) {
  {
    std::lock_guard<std::mutex> lock(gMutex);
    unmapRegion(r);
  }
  delete r;
}

// The live region under `buffer`, and [first, end) pages of the range (offset, bytes).
struct RangeArgs {
  Region* region;
  size_t firstPage;
  size_t endPage;
};

RangeArgs rangeArgs(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    throw Napi::TypeError::New(env, std::string(fn) + "(buffer, offset, bytes): buffer must be an ArrayBuffer from reserveRegion");
  }
  Napi::ArrayBuffer buf = info[0].As<Napi::ArrayBuffer>();
  double offset = numberArg(info, 1, fn, "offset");
  double bytes = numberArg(info, 2, fn, "bytes");
  auto it = gLive.find(reinterpret_cast<uintptr_t>(buf.Data()));
  if (buf.Data() == nullptr || it == gLive.end()) {
    throw Napi::Error::New(env, std::string(fn) + ": buffer is not a live region from reserveRegion (released?)");
  }
  Region* r = it->second;
  size_t ps = pageSize();
  if (static_cast<uint64_t>(offset) % ps != 0) {
    throw Napi::RangeError::New(env, std::string(fn) + ": offset " + std::to_string(static_cast<uint64_t>(offset)) + " is not a multiple of the page size " + std::to_string(ps));
  }
  if (offset + bytes > static_cast<double>(r->bytes)) {
    throw Napi::RangeError::New(env, std::string(fn) + ": range [" + std::to_string(static_cast<uint64_t>(offset)) + ", +" + std::to_string(static_cast<uint64_t>(bytes)) +
                                         ") is outside the region of " + std::to_string(r->bytes) + " bytes");
  }
  size_t first = static_cast<size_t>(offset) / ps;
  size_t end = (static_cast<size_t>(offset) + static_cast<size_t>(bytes) + ps - 1) / ps;
  return {r, first, end};
}

Napi::Value ReserveRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double bytesD = numberArg(info, 0, "reserveRegion", "bytes");
  size_t ps = pageSize();
  size_t bytes = (static_cast<size_t>(bytesD) + ps - 1) / ps * ps;
  if (bytes == 0) bytes = ps;  // every region has a unique address
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw Napi::Error::New(env, "reserveRegion: cannot reserve " + std::to_string(bytes) + " bytes of address space: " + strerror(errno));
  }
  Region* r = new Region{static_cast<uint8_t*>(p), bytes, std::vector<uint8_t>(bytes / ps, 0)};
  {
    std::lock_guard<std::mutex> lock(gMutex);
    gLive[reinterpret_cast<uintptr_t>(p)] = r;
  }
  return Napi::ArrayBuffer::New(env, p, static_cast<size_t>(bytesD) == 0 ? 0 : bytes, finalizeRegion, r);
}

Napi::Value LockRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(gMutex);
  RangeArgs a = rangeArgs(info, "lockRange");
  Napi::Object result = Napi::Object::New(env);
  size_t ps = pageSize();
  if (a.endPage > a.firstPage && mlock(a.region->base + a.firstPage * ps, (a.endPage - a.firstPage) * ps) != 0) {
    result.Set("locked", false);
    result.Set("error", "mlock of " + std::to_string((a.endPage - a.firstPage) * ps) + " bytes failed: " + memlockHint(errno));
    return result;
  }
  for (size_t p = a.firstPage; p < a.endPage; p++) {
    if (!a.region->locked[p]) gLockedBytes += ps;
    a.region->locked[p] = 1;
  }
  result.Set("locked", true);
  return result;
}

void unlockPages(const RangeArgs& a) {
  size_t ps = pageSize();
  if (a.endPage > a.firstPage) munlock(a.region->base + a.firstPage * ps, (a.endPage - a.firstPage) * ps);
  for (size_t p = a.firstPage; p < a.endPage; p++) {
    if (a.region->locked[p]) gLockedBytes -= ps;
    a.region->locked[p] = 0;
  }
}

Napi::Value UnlockRange(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  unlockPages(rangeArgs(info, "unlockRange"));
  return info.Env().Undefined();
}

// munlock + madvise(MADV_DONTNEED): the range's pages are freed now (anonymous private
// memory: the next touch gets zero pages).
Napi::Value DiscardRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(gMutex);
  RangeArgs a = rangeArgs(info, "discardRange");
  unlockPages(a);
  size_t ps = pageSize();
  if (a.endPage > a.firstPage && madvise(a.region->base + a.firstPage * ps, (a.endPage - a.firstPage) * ps, MADV_DONTNEED) != 0) {
    throw Napi::Error::New(env, std::string("discardRange: madvise(MADV_DONTNEED) failed: ") + strerror(errno));
  }
  return env.Undefined();
}

// Bytes of the range backed by physical pages now (mincore), for tests and statistics.
Napi::Value ResidentBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(gMutex);
  RangeArgs a = rangeArgs(info, "residentBytes");
  size_t ps = pageSize();
  size_t n = a.endPage - a.firstPage;
  if (n == 0) return Napi::Number::New(env, 0);
  std::vector<unsigned char> vec(n);
  if (mincore(a.region->base + a.firstPage * ps, n * ps, vec.data()) != 0) {
    throw Napi::Error::New(env, std::string("residentBytes: mincore failed: ") + strerror(errno));
  }
  double resident = 0;
  for (unsigned char v : vec) resident += (v & 1) ? static_cast<double>(ps) : 0;
  return Napi::Number::New(env, resident);
}

// Unmaps a region now (instead of when the buffer is collected) and detaches the buffer, so
// no view can reach the unmapped range.
Napi::Value ReleaseRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "releaseRegion(buffer): buffer must be an ArrayBuffer from reserveRegion");
  Napi::ArrayBuffer buf = info[0].As<Napi::ArrayBuffer>();
  if (buf.Data() == nullptr) return env.Undefined();  // already detached
  std::lock_guard<std::mutex> lock(gMutex);
  auto it = gLive.find(reinterpret_cast<uintptr_t>(buf.Data()));
  if (it == gLive.end()) throw Napi::Error::New(env, "releaseRegion: buffer is not a live region from reserveRegion");
  Region* r = it->second;
  buf.Detach();
  unmapRegion(r);  // the finalizer (later) only deletes the record
  return env.Undefined();
}

Napi::Value RegionStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(gMutex);
  double reserved = 0;
  for (const auto& kv : gLive) reserved += static_cast<double>(kv.second->bytes);
  Napi::Object o = Napi::Object::New(env);
  o.Set("regions", static_cast<double>(gLive.size()));
  o.Set("reservedBytes", reserved);
  o.Set("lockedBytes", static_cast<double>(gLockedBytes));
  o.Set("pageSize", static_cast<double>(pageSize()));
  return o;
}

}  // namespace

FLEXINFER_MODULE(memory_region) {
  exports.Set("reserveRegion", Napi::Function::New(env, ReserveRegion));
  exports.Set("lockRange", Napi::Function::New(env, LockRange));
  exports.Set("unlockRange", Napi::Function::New(env, UnlockRange));
  exports.Set("discardRange", Napi::Function::New(env, DiscardRange));
  exports.Set("residentBytes", Napi::Function::New(env, ResidentBytes));
  exports.Set("releaseRegion", Napi::Function::New(env, ReleaseRegion));
  exports.Set("regionStats", Napi::Function::New(env, RegionStats));
}
