// Shared state of the vmem module (native/src/vmem.cc: pools, reservations, synchronous
// mapping; native/src/vmem_async.cc: the background mapper). See vmem.cc for the design.
#pragma once
#include <napi.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__linux__) && !defined(FLEXINFER_VMEM_FORCE_HEAP)
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>
#define FLEXINFER_VMEM_MEMFD 1
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21U << 26)
#endif
#else
#define FLEXINFER_VMEM_MEMFD 0
#endif

namespace flexinfer {
namespace vmem {

constexpr size_t kPageBytes = 4096;
constexpr size_t kHugePageBytes = 2u << 20;

struct Pool {
  napi_env env = nullptr;  // the env (main thread or worker) that created the pool
  int fd = -1;
  size_t chunkBytes = 0;
  uint32_t capacityChunks = 0;
  uint32_t fileChunks = 0;  // current memfd size in chunks
  bool hugePages = false;
  std::string backing;       // "memfd-hugetlb" | "memfd" | "heap"
  std::string hugePagesNote;  // why huge pages are off, when they were asked for
  uint8_t* view = nullptr;    // whole-pool MAP_SHARED view (memfd) or heap array (fallback)
  std::vector<uint32_t> mapCount;  // live mappings per chunk
  uint64_t mappedChunks = 0, maps = 0, unmaps = 0, copies = 0, discards = 0, grows = 0;
  uint64_t mapNs = 0, unmapNs = 0, copyNs = 0, discardNs = 0;
  // Background maps (vmem_async.cc): submitted and not yet drained; done; failed; time spent.
  uint32_t pendingMaps = 0;
  uint64_t backgroundMaps = 0, backgroundFailures = 0, backgroundMapNs = 0;
  std::vector<uint32_t> reservations;
};

struct Reservation {
  uint32_t pool = 0;
  uint8_t* base = nullptr;
  size_t bytes = 0;
  size_t mapBytes = 0;  // bytes actually reserved (with alignment slack)
  uint8_t* mapBase = nullptr;
  std::vector<int32_t> chunkAt;  // chunk mapped at each chunk-sized slot, -1 if none
  napi_env env = nullptr;
  napi_ref buffer = nullptr;  // weak reference to the external ArrayBuffer
};

// Guards everything above; every addon call takes it (the background thread never does).
extern std::mutex gMutex;
extern std::unordered_map<uint32_t, Pool> gPools;
extern std::unordered_map<uint32_t, Reservation> gReservations;

uint64_t nowNs();
std::string errnoText(const char* what);
uint64_t indexArg(const Napi::CallbackInfo& info, size_t i, const char* name, double limit);
Pool& poolArg(const Napi::CallbackInfo& info, size_t i, uint32_t* idOut = nullptr);
Reservation& reservationArg(const Napi::CallbackInfo& info, size_t i, uint32_t* idOut = nullptr);
size_t slotArg(const Napi::CallbackInfo& info, Reservation& r, Pool& p, size_t i);
void growTo(Napi::Env env, Pool& p, uint32_t c);
bool protectNone(uint8_t* addr, size_t bytes);
// Throws unless the pool has no background maps in flight (callers drain first).
void requireSettled(Napi::Env env, const Pool& p);

// vmem_async.cc. A failed background map, already undone in the bookkeeping.
struct FailedMap {
  uint32_t reservation;
  size_t offset;
  int32_t chunk;
  int err;
};
// Waits until the background mapper is idle and settles pool `poolId`'s finished maps
// (counters; failures undone and appended to `failures` if given). Call with gMutex held.
void drainBackground(uint32_t poolId, std::vector<FailedMap>* failures);

}  // namespace vmem
}  // namespace flexinfer

