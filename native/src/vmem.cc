// Virtual memory for vTensor KV caches (mechanism only; policy lives in src/kv/).
//
//   chunk pool (one memfd, grown with ftruncate up to capacityChunks * chunkBytes)
//   +--------+--------+--------+--------+----
//   | c0     | c1     | c2     | c3     | ...        physical chunks (file offsets)
//   +--------+--------+--------+--------+----
//        |  \________________       |
//        v                   v      v
//   reservation A: [ c0 | c1 | -- | -- | -- ]      PROT_NONE address range per tensor or
//   reservation B: [ c0 | c3 | -- | -- ]           sequence; chunks mapped MAP_FIXED|MAP_SHARED
//                                                 at chunk-aligned offsets ("--" faults)
//
// The same chunk may be mapped into several reservations (prefix sharing). Unmapping maps a
// PROT_NONE anonymous page range back over the slot so the address range stays reserved.
// A chunk that returns to the free list is discarded (fallocate PUNCH_HOLE) so it stops
// holding memory. These are the CPU counterparts of CUDA VMM's reserve / create / map / unmap.
//
// JS sees each reservation as an external ArrayBuffer over the reserved range. Its finalizer
// frees nothing: the reservation is freed by vmemRelease(), which first detaches the
// ArrayBuffer (every view on it becomes length 0), so JS can never touch a released range.
// Handles are ids validated on every call.
//
// Without memfd (non-Linux), a fallback keeps the same API over heap memory: chunks live in a
// heap array and map/unmap COPY a chunk into / out of the reservation. Mappings are then not
// shared (pool info: sharing=false), and copy/discard see a chunk's contents as of its last
// unmap; the KV manager refuses such a pool and the engine uses the contiguous layout instead.
// Build with -DFLEXINFER_VMEM_FORCE_HEAP to try the fallback on Linux.
#include "vmem.h"

#include "registry.h"

namespace flexinfer {
namespace vmem {

std::mutex gMutex;
std::unordered_map<uint32_t, Pool> gPools;
std::unordered_map<uint32_t, Reservation> gReservations;

namespace {
std::vector<napi_env> gHookedEnvs;
uint32_t gNextId = 1;
}  // namespace

uint64_t nowNs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::string errnoText(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

double numberArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("vmem: argument '") + name + "' must be a number");
  }
  return info[i].As<Napi::Number>().DoubleValue();
}

// A non-negative integer argument below `limit` (exclusive).
uint64_t indexArg(const Napi::CallbackInfo& info, size_t i, const char* name, double limit) {
  double v = numberArg(info, i, name);
  if (!(v >= 0) || v != static_cast<double>(static_cast<uint64_t>(v)) || v >= limit) {
    throw Napi::RangeError::New(info.Env(), std::string("vmem: ") + name + " must be an integer in [0, " +
                                                std::to_string(static_cast<uint64_t>(limit)) + "), got " +
                                                std::to_string(v));
  }
  return static_cast<uint64_t>(v);
}

Pool& poolArg(const Napi::CallbackInfo& info, size_t i, uint32_t* idOut) {
  uint32_t id = static_cast<uint32_t>(indexArg(info, i, "pool handle", 4294967296.0));
  auto it = gPools.find(id);
  if (it == gPools.end()) {
    throw Napi::Error::New(info.Env(), "vmem: pool handle " + std::to_string(id) + " is not valid (disposed?)");
  }
  if (idOut) *idOut = id;
  return it->second;
}

Reservation& reservationArg(const Napi::CallbackInfo& info, size_t i, uint32_t* idOut) {
  uint32_t id = static_cast<uint32_t>(indexArg(info, i, "reservation handle", 4294967296.0));
  auto it = gReservations.find(id);
  if (it == gReservations.end()) {
    throw Napi::Error::New(info.Env(),
                           "vmem: reservation handle " + std::to_string(id) + " is not valid (released?)");
  }
  if (idOut) *idOut = id;
  return it->second;
}

// Makes the pool's backing store cover chunk `c` (ftruncate grows the memfd; sparse, costs no memory).
void growTo(Napi::Env env, Pool& p, uint32_t c) {
  if (c < p.fileChunks) return;
  uint64_t want = std::max<uint64_t>(c + 1, std::min<uint64_t>(p.capacityChunks, uint64_t(p.fileChunks) * 2));
  want = std::min<uint64_t>(want, p.capacityChunks);
#if FLEXINFER_VMEM_MEMFD
  if (ftruncate(p.fd, static_cast<off_t>(want * p.chunkBytes)) != 0) {
    throw Napi::Error::New(env, errnoText("vmem: ftruncate of the chunk pool failed"));
  }
#else
  (void)env;
#endif
  p.fileChunks = static_cast<uint32_t>(want);
  p.grows++;
}

// Replaces [addr, addr+bytes) by an inaccessible reserved range.
void requireSettled(Napi::Env env, const Pool& p) {
  if (p.pendingMaps != 0) {
    throw Napi::Error::New(env, "vmem: " + std::to_string(p.pendingMaps) +
                                    " background maps are in flight on this pool; call vmemDrain() first");
  }
}

bool protectNone(uint8_t* addr, size_t bytes) {
#if FLEXINFER_VMEM_MEMFD
  void* r = mmap(addr, bytes, PROT_NONE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return r == addr;
#else
  std::memset(addr, 0, bytes);
  return true;
#endif
}

void detachBuffer(Reservation& r) {
  if (r.buffer == nullptr) return;
  napi_value value = nullptr;
  if (napi_get_reference_value(r.env, r.buffer, &value) == napi_ok && value != nullptr) {
    napi_detach_arraybuffer(r.env, value);
  }
  napi_delete_reference(r.env, r.buffer);
  r.buffer = nullptr;
}

void releaseReservation(uint32_t id, bool detach = true) {
  auto it = gReservations.find(id);
  if (it == gReservations.end()) return;
  Reservation& r = it->second;
  if (detach) detachBuffer(r);  // first, so no JS view can reach the range once it is gone
  auto pit = gPools.find(r.pool);
  if (pit != gPools.end()) {
    Pool& p = pit->second;
    for (int32_t c : r.chunkAt) {
      if (c >= 0) {
        p.mapCount[c]--;
        p.mappedChunks--;
      }
    }
    auto& list = p.reservations;
    for (size_t i = 0; i < list.size(); i++) {
      if (list[i] == id) {
        list[i] = list.back();
        list.pop_back();
        break;
      }
    }
  }
#if FLEXINFER_VMEM_MEMFD
  munmap(r.mapBase, r.mapBytes);
#else
  std::free(r.mapBase);
#endif
  gReservations.erase(it);
}

// Frees a pool and its reservations. detach=false when the env is being torn down (no JS runs).
void destroyPool(uint32_t id, bool detach) {
  auto it = gPools.find(id);
  if (it == gPools.end()) return;
  drainBackground(id, nullptr);  // no mmap may still be running into these ranges
  Pool& p = it->second;
  std::vector<uint32_t> rs = p.reservations;
  for (uint32_t r : rs) releaseReservation(r, detach);
#if FLEXINFER_VMEM_MEMFD
  munmap(p.view, p.chunkBytes * p.capacityChunks);
  close(p.fd);
#else
  std::free(p.view);
#endif
  gPools.erase(it);
}

// A worker that ends without dispose() must not leak its pools' memory.
void envCleanup(void* arg) {
  std::lock_guard<std::mutex> lock(gMutex);
  napi_env env = static_cast<napi_env>(arg);
  std::vector<uint32_t> ids;
  for (auto& kv : gPools) {
    if (kv.second.env == env) ids.push_back(kv.first);
  }
  for (uint32_t id : ids) destroyPool(id, false);
  for (size_t i = 0; i < gHookedEnvs.size(); i++) {
    if (gHookedEnvs[i] == env) {
      gHookedEnvs.erase(gHookedEnvs.begin() + i);
      break;
    }
  }
}

Napi::Value PoolCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(gMutex);
  double chunk = numberArg(info, 0, "chunkBytes");
  double cap = numberArg(info, 1, "capacityChunks");
  bool wantHuge = info.Length() > 2 && info[2].ToBoolean().Value();
  if (!(chunk >= kPageBytes) || chunk != static_cast<double>(static_cast<uint64_t>(chunk)) ||
      static_cast<uint64_t>(chunk) % kPageBytes != 0 || chunk > double(1u << 30)) {
    throw Napi::RangeError::New(env, "vmem: chunkBytes must be a multiple of 4096 in [4096, 1 GiB], got " +
                                         std::to_string(chunk));
  }
  if (!(cap >= 1) || cap != static_cast<double>(static_cast<uint32_t>(cap)) || cap * chunk > double(1ull << 46)) {
    throw Napi::RangeError::New(env, "vmem: capacityChunks must be an integer >= 1 (and the pool under 64 TiB), got " +
                                         std::to_string(cap));
  }
  Pool p;
  p.env = env;
  p.chunkBytes = static_cast<size_t>(chunk);
  p.capacityChunks = static_cast<uint32_t>(cap);
  p.mapCount.assign(p.capacityChunks, 0);
  size_t total = p.chunkBytes * p.capacityChunks;
#if FLEXINFER_VMEM_MEMFD
  if (wantHuge) {
    if (p.chunkBytes % kHugePageBytes != 0) {
      p.hugePagesNote = "chunkBytes is not a multiple of 2 MiB";
    } else {
      int fd = memfd_create("flexinfer-kv-huge", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
      if (fd < 0) {
        p.hugePagesNote = errnoText("memfd_create(MFD_HUGETLB)");
      } else if (ftruncate(fd, static_cast<off_t>(p.chunkBytes)) != 0) {
        p.hugePagesNote = errnoText("ftruncate(hugetlb memfd)");
        close(fd);
      } else {
        // Probe: a mapping reserves huge pages; none configured (vm.nr_hugepages = 0) fails here.
        void* probe = mmap(nullptr, p.chunkBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (probe == MAP_FAILED) {
          p.hugePagesNote = errnoText("mmap(hugetlb memfd) (is vm.nr_hugepages > 0?)");
          close(fd);
        } else {
          munmap(probe, p.chunkBytes);
          p.fd = fd;
          p.fileChunks = 1;
          p.hugePages = true;
          p.backing = "memfd-hugetlb";
        }
      }
    }
  }
  if (p.fd < 0) {
    p.fd = memfd_create("flexinfer-kv", MFD_CLOEXEC);
    if (p.fd < 0) throw Napi::Error::New(env, errnoText("vmem: memfd_create failed"));
    p.backing = "memfd";
  }
  // NORESERVE: the view reserves no memory (matters for hugetlb); only touched chunks are backed.
  void* view = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, p.fd, 0);
  if (view == MAP_FAILED) {
    close(p.fd);
    throw Napi::Error::New(env, errnoText("vmem: mmap of the chunk pool view failed"));
  }
  p.view = static_cast<uint8_t*>(view);
#else
  if (wantHuge) p.hugePagesNote = "no memfd on this platform";
  p.view = static_cast<uint8_t*>(std::calloc(total, 1));
  if (p.view == nullptr) throw Napi::Error::New(env, "vmem: out of memory for the heap chunk pool");
  p.backing = "heap";
#endif
  bool hooked = false;
  for (napi_env e : gHookedEnvs) hooked = hooked || e == env;
  if (!hooked) {
    napi_add_env_cleanup_hook(env, envCleanup, static_cast<napi_env>(env));
    gHookedEnvs.push_back(env);
  }
  uint32_t id = gNextId++;
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", id);
  out.Set("backing", p.backing);
  out.Set("hugePages", p.hugePages);
  out.Set("hugePagesNote", p.hugePagesNote);
  out.Set("sharing", FLEXINFER_VMEM_MEMFD ? true : false);
  gPools.emplace(id, std::move(p));
  return out;
}

Napi::Value PoolDestroy(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  uint32_t id = 0;
  poolArg(info, 0, &id);
  destroyPool(id, true);
  return info.Env().Undefined();
}

Napi::Value PoolStats(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Pool& p = poolArg(info, 0);
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("chunkBytes", double(p.chunkBytes));
  o.Set("capacityChunks", double(p.capacityChunks));
  o.Set("fileChunks", double(p.fileChunks));
  o.Set("mappedChunks", double(p.mappedChunks));
  o.Set("reservations", double(p.reservations.size()));
  o.Set("maps", double(p.maps));
  o.Set("unmaps", double(p.unmaps));
  o.Set("copies", double(p.copies));
  o.Set("discards", double(p.discards));
  o.Set("grows", double(p.grows));
  o.Set("mapMs", double(p.mapNs) / 1e6);
  o.Set("unmapMs", double(p.unmapNs) / 1e6);
  o.Set("copyMs", double(p.copyNs) / 1e6);
  o.Set("discardMs", double(p.discardNs) / 1e6);
  o.Set("pendingMaps", double(p.pendingMaps));
  o.Set("backgroundMaps", double(p.backgroundMaps));
  o.Set("backgroundFailures", double(p.backgroundFailures));
  o.Set("backgroundMapMs", double(p.backgroundMapNs) / 1e6);
  return o;
}

// Live mappings of one chunk (so policy code can assert a chunk is unmapped before reuse).
Napi::Value ChunkMapCount(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Pool& p = poolArg(info, 0);
  uint64_t c = indexArg(info, 1, "chunk index", p.capacityChunks);
  return Napi::Number::New(info.Env(), p.mapCount[c]);
}

// Frees the physical pages of a chunk returning to the free list (it reads as zeros after).
Napi::Value ChunkDiscard(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Napi::Env env = info.Env();
  Pool& p = poolArg(info, 0);
  uint64_t c = indexArg(info, 1, "chunk index", p.capacityChunks);
  requireSettled(env, p);
  if (p.mapCount[c] != 0) {
    throw Napi::Error::New(env, "vmem: chunk " + std::to_string(c) + " is still mapped in " +
                                    std::to_string(p.mapCount[c]) + " reservation(s); unmap it before discarding");
  }
  if (c >= p.fileChunks) return env.Undefined();  // never backed
  uint64_t t0 = nowNs();
#if FLEXINFER_VMEM_MEMFD
  off_t off = static_cast<off_t>(c * p.chunkBytes);
  if (fallocate(p.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, static_cast<off_t>(p.chunkBytes)) != 0) {
    // Older kernels without hole punching on shmem: MADV_REMOVE does the same through the view.
    if (madvise(p.view + c * p.chunkBytes, p.chunkBytes, MADV_REMOVE) != 0) {
      throw Napi::Error::New(env, errnoText("vmem: freeing chunk pages (fallocate/madvise) failed"));
    }
  }
#else
  std::memset(p.view + c * p.chunkBytes, 0, p.chunkBytes);
#endif
  p.discardNs += nowNs() - t0;
  p.discards++;
  return env.Undefined();
}

// Copies bytes [0, bytes) of chunk src to chunk dst (the partial tail on fork). bytes defaults to a chunk.
Napi::Value ChunkCopy(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Napi::Env env = info.Env();
  Pool& p = poolArg(info, 0);
  uint64_t src = indexArg(info, 1, "source chunk index", p.capacityChunks);
  uint64_t dst = indexArg(info, 2, "destination chunk index", p.capacityChunks);
  uint64_t bytes = p.chunkBytes;
  if (info.Length() > 3 && !info[3].IsUndefined()) bytes = indexArg(info, 3, "bytes", double(p.chunkBytes) + 1);
  if (src == dst) throw Napi::RangeError::New(env, "vmem: copy source and destination are the same chunk");
  requireSettled(env, p);
  uint64_t t0 = nowNs();
  growTo(env, p, static_cast<uint32_t>(std::max(src, dst)));
  std::memcpy(p.view + dst * p.chunkBytes, p.view + src * p.chunkBytes, bytes);
  p.copyNs += nowNs() - t0;
  p.copies++;
  return env.Undefined();
}

// Reserves `bytes` (a multiple of the chunk size) of inaccessible address space.
// Returns { handle, buffer } where buffer is an external ArrayBuffer over the range.
Napi::Value Reserve(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Napi::Env env = info.Env();
  uint32_t poolId = 0;
  Pool& p = poolArg(info, 0, &poolId);
  uint64_t bytes = indexArg(info, 1, "reservation bytes", double(1ull << 46));
  if (bytes == 0 || bytes % p.chunkBytes != 0) {
    throw Napi::RangeError::New(env, "vmem: reservation bytes must be a positive multiple of the chunk size (" +
                                         std::to_string(p.chunkBytes) + "), got " + std::to_string(bytes));
  }
  Reservation r;
  r.pool = poolId;
  r.bytes = bytes;
  r.chunkAt.assign(bytes / p.chunkBytes, -1);
#if FLEXINFER_VMEM_MEMFD
  // Huge-page chunks must sit at 2 MiB-aligned addresses: over-reserve and trim.
  size_t align = p.hugePages ? kHugePageBytes : kPageBytes;
  size_t total = bytes + (align > kPageBytes ? align : 0);
  void* m = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    int err = errno;
    Napi::Error e = Napi::Error::New(env, errnoText("vmem: reserving address space failed"));
    e.Set("code", err == ENOMEM ? "ENOMEM" : "EMAP");
    throw e;
  }
  uintptr_t start = (reinterpret_cast<uintptr_t>(m) + align - 1) & ~(uintptr_t(align) - 1);
  uint8_t* mb = static_cast<uint8_t*>(m);
  uint8_t* base = reinterpret_cast<uint8_t*>(start);
  if (base > mb) munmap(mb, base - mb);
  uint8_t* end = base + bytes;
  if (end < mb + total) munmap(end, (mb + total) - end);
  r.mapBase = base;
  r.mapBytes = bytes;
  r.base = base;
#else
  r.mapBase = static_cast<uint8_t*>(std::calloc(bytes, 1));
  if (r.mapBase == nullptr) throw Napi::Error::New(env, "vmem: out of memory for a heap reservation");
  r.mapBytes = bytes;
  r.base = r.mapBase;
#endif
  // The finalizer frees nothing: vmemRelease() owns the range and detaches this buffer first.
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, r.base, bytes, [](Napi::Env, void*) {});
  r.env = env;
  napi_create_reference(env, buffer, 0, &r.buffer);
  uint32_t id = gNextId++;
  p.reservations.push_back(id);
  gReservations.emplace(id, std::move(r));
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", id);
  out.Set("buffer", buffer);
  return out;
}

Napi::Value Release(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  uint32_t id = 0;
  Reservation& r = reservationArg(info, 0, &id);
  requireSettled(info.Env(), gPools.at(r.pool));
  releaseReservation(id);
  return info.Env().Undefined();
}

// Validates (reservation, offset) and returns the slot index.
size_t slotArg(const Napi::CallbackInfo& info, Reservation& r, Pool& p, size_t i) {
  uint64_t off = indexArg(info, i, "offset", double(r.bytes));
  if (off % p.chunkBytes != 0) {
    throw Napi::RangeError::New(info.Env(), "vmem: offset " + std::to_string(off) +
                                                " is not a multiple of the chunk size " + std::to_string(p.chunkBytes));
  }
  return off / p.chunkBytes;
}

// map(reservation, offset, chunk): chunk's pages appear at base+offset, read/write, shared.
Napi::Value Map(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Napi::Env env = info.Env();
  Reservation& r = reservationArg(info, 0);
  Pool& p = gPools.at(r.pool);
  size_t slot = slotArg(info, r, p, 1);
  uint64_t c = indexArg(info, 2, "chunk index", p.capacityChunks);
  requireSettled(env, p);
  if (r.chunkAt[slot] >= 0) {
    throw Napi::Error::New(env, "vmem: offset " + std::to_string(slot * p.chunkBytes) + " already holds chunk " +
                                    std::to_string(r.chunkAt[slot]) + "; unmap it first");
  }
  uint64_t t0 = nowNs();
  growTo(env, p, static_cast<uint32_t>(c));
  uint8_t* addr = r.base + slot * p.chunkBytes;
#if FLEXINFER_VMEM_MEMFD
  // POPULATE pre-faults the page tables now, off the compute path (and allocates a fresh chunk).
  void* m = mmap(addr, p.chunkBytes, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_SHARED | MAP_POPULATE, p.fd,
                 static_cast<off_t>(c * p.chunkBytes));
  if (m != addr) {
    // Typically ENOMEM from vm.max_map_count (every mapped chunk is a VMA). Keep the slot
    // reserved, and tell JS the code so the KV manager can report "short" instead of failing.
    int err = errno;
    std::string msg = errnoText("vmem: mapping a chunk failed");
    if (err == ENOMEM) msg += " (too many mappings? see /proc/sys/vm/max_map_count; larger chunks need fewer)";
    protectNone(addr, p.chunkBytes);
    Napi::Error e = Napi::Error::New(env, msg);
    e.Set("code", err == ENOMEM ? "ENOMEM" : "EMAP");
    throw e;
  }
#else
  std::memcpy(addr, p.view + c * p.chunkBytes, p.chunkBytes);
#endif
  p.mapNs += nowNs() - t0;
  p.maps++;
  r.chunkAt[slot] = static_cast<int32_t>(c);
  p.mapCount[c]++;
  p.mappedChunks++;
  return env.Undefined();
}

// unmap(reservation, offset): the slot becomes inaccessible again (still reserved).
Napi::Value Unmap(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Napi::Env env = info.Env();
  Reservation& r = reservationArg(info, 0);
  Pool& p = gPools.at(r.pool);
  size_t slot = slotArg(info, r, p, 1);
  int32_t c = r.chunkAt[slot];
  if (c < 0) throw Napi::Error::New(env, "vmem: offset " + std::to_string(slot * p.chunkBytes) + " is not mapped");
  requireSettled(env, p);
  uint64_t t0 = nowNs();
  uint8_t* addr = r.base + slot * p.chunkBytes;
#if !FLEXINFER_VMEM_MEMFD
  std::memcpy(p.view + size_t(c) * p.chunkBytes, addr, p.chunkBytes);  // write back (copying fallback)
#endif
  if (!protectNone(addr, p.chunkBytes)) throw Napi::Error::New(env, errnoText("vmem: unmapping a chunk failed"));
  p.unmapNs += nowNs() - t0;
  p.unmaps++;
  r.chunkAt[slot] = -1;
  p.mapCount[c]--;
  p.mappedChunks--;
  return env.Undefined();
}

// Chunk mapped at an offset, or -1.
Napi::Value ChunkAt(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Reservation& r = reservationArg(info, 0);
  Pool& p = gPools.at(r.pool);
  size_t slot = slotArg(info, r, p, 1);
  return Napi::Number::New(info.Env(), r.chunkAt[slot]);
}

}  // namespace vmem
}  // namespace flexinfer

using namespace flexinfer::vmem;

FLEXINFER_MODULE(vmem) {
  exports.Set("vmemPoolCreate", Napi::Function::New(env, PoolCreate));
  exports.Set("vmemPoolDestroy", Napi::Function::New(env, PoolDestroy));
  exports.Set("vmemPoolStats", Napi::Function::New(env, PoolStats));
  exports.Set("vmemChunkMapCount", Napi::Function::New(env, ChunkMapCount));
  exports.Set("vmemChunkDiscard", Napi::Function::New(env, ChunkDiscard));
  exports.Set("vmemChunkCopy", Napi::Function::New(env, ChunkCopy));
  exports.Set("vmemReserve", Napi::Function::New(env, Reserve));
  exports.Set("vmemRelease", Napi::Function::New(env, Release));
  exports.Set("vmemMap", Napi::Function::New(env, Map));
  exports.Set("vmemUnmap", Napi::Function::New(env, Unmap));
  exports.Set("vmemChunkAt", Napi::Function::New(env, ChunkAt));
}
