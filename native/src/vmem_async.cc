// Background mapping: vTensor's "extend ahead of need" off the JS thread.
//
//   JS thread                          mapper thread
//   vmemMapAsync(r, off, c) --queue-->  mmap(MAP_FIXED|MAP_SHARED|MAP_POPULATE)  (page zeroing,
//   ... forward pass runs ...           page tables: the costly part, ~50 us per 64 KiB chunk)
//   vmemDrain(pool) <--finished------   
//
// vmemMapAsync() validates and updates the bookkeeping at once (the slot counts as mapped),
// then queues the mmap. JS must call vmemDrain(pool) before touching the new range, and before
// any other operation on that pool (they throw while maps are in flight). A map that fails in
// the background (ENOMEM from vm.max_map_count) is undone at drain time and returned, so
// policy code can shrink the sequence; the slot stays reserved (PROT_NONE) meanwhile.
#include "vmem.h"

#include <thread>

#include "registry.h"

namespace flexinfer {
namespace vmem {
namespace {

struct Job {
  uint32_t pool = 0;
  uint32_t reservation = 0;
  size_t offset = 0;
  int32_t chunk = -1;
  uint8_t* addr = nullptr;
  size_t bytes = 0;
  int fd = -1;
  uint64_t fileOffset = 0;
  bool injectFailure = false;  // test hook (vmemDebugFailNextMaps)
  int err = 0;
  uint64_t ns = 0;
};

struct Mapper {
  std::mutex m;
  std::condition_variable work, idle;
  std::deque<Job> queue;
  std::vector<Job> finished;
  size_t busy = 0;
  bool started = false;
};

// Never destroyed: the (detached) thread may outlive static destruction at exit.
Mapper& mapper() {
  static Mapper* m = new Mapper();
  return *m;
}

uint32_t gFailNext = 0;  // guarded by gMutex

void mapperLoop() {
  Mapper& mp = mapper();
  std::unique_lock<std::mutex> lock(mp.m);
  for (;;) {
    mp.work.wait(lock, [&] { return !mp.queue.empty(); });
    Job job = mp.queue.front();
    mp.queue.pop_front();
    mp.busy++;
    lock.unlock();
    uint64_t t0 = nowNs();
    if (job.injectFailure) {
      job.err = ENOMEM;
    } else {
#if FLEXINFER_VMEM_MEMFD
      void* r = mmap(job.addr, job.bytes, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_SHARED | MAP_POPULATE, job.fd,
                     static_cast<off_t>(job.fileOffset));
      if (r != job.addr) {
        job.err = errno != 0 ? errno : EINVAL;
        protectNone(job.addr, job.bytes);  // keep the slot reserved
      }
#endif
    }
    job.ns = nowNs() - t0;
    lock.lock();
    mp.busy--;
    mp.finished.push_back(job);
    if (mp.queue.empty() && mp.busy == 0) mp.idle.notify_all();
  }
}

Napi::Value MapAsync(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Napi::Env env = info.Env();
  uint32_t rid = 0;
  Reservation& r = reservationArg(info, 0, &rid);
  Pool& p = gPools.at(r.pool);
  size_t slot = slotArg(info, r, p, 1);
  uint64_t c = indexArg(info, 2, "chunk index", p.capacityChunks);
  if (r.chunkAt[slot] >= 0) {
    throw Napi::Error::New(env, "vmem: offset " + std::to_string(slot * p.chunkBytes) + " already holds chunk " +
                                    std::to_string(r.chunkAt[slot]) + "; unmap it first");
  }
  growTo(env, p, static_cast<uint32_t>(c));
  uint8_t* addr = r.base + slot * p.chunkBytes;
  r.chunkAt[slot] = static_cast<int32_t>(c);
  p.mapCount[c]++;
  p.mappedChunks++;
#if FLEXINFER_VMEM_MEMFD
  Job job;
  job.pool = r.pool;
  job.reservation = rid;
  job.offset = slot * p.chunkBytes;
  job.chunk = static_cast<int32_t>(c);
  job.addr = addr;
  job.bytes = p.chunkBytes;
  job.fd = p.fd;
  job.fileOffset = c * p.chunkBytes;
  if (gFailNext > 0) {
    gFailNext--;
    job.injectFailure = true;
  }
  p.pendingMaps++;
  Mapper& mp = mapper();
  {
    std::lock_guard<std::mutex> ql(mp.m);
    if (!mp.started) {
      std::thread(mapperLoop).detach();
      mp.started = true;
    }
    mp.queue.push_back(job);
  }
  mp.work.notify_one();
#else
  std::memcpy(addr, p.view + c * p.chunkBytes, p.chunkBytes);  // copying fallback: done at once
  p.backgroundMaps++;
#endif
  return env.Undefined();
}

// vmemDrain(pool) -> [{ handle, offset, chunk, error }] of background maps that failed (undone).
Napi::Value Drain(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  Napi::Env env = info.Env();
  uint32_t id = 0;
  poolArg(info, 0, &id);
  std::vector<FailedMap> failures;
  drainBackground(id, &failures);
  Napi::Array out = Napi::Array::New(env, failures.size());
  for (size_t i = 0; i < failures.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("handle", failures[i].reservation);
    o.Set("offset", double(failures[i].offset));
    o.Set("chunk", failures[i].chunk);
    o.Set("code", failures[i].err == ENOMEM ? "ENOMEM" : "EMAP");
    o.Set("error", std::string(std::strerror(failures[i].err)));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

// Test hook: the next n background maps fail with ENOMEM (nothing is mapped for them).
Napi::Value DebugFailNextMaps(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(gMutex);
  gFailNext = static_cast<uint32_t>(indexArg(info, 0, "count", 1e6));
  return info.Env().Undefined();
}

}  // namespace

void drainBackground(uint32_t poolId, std::vector<FailedMap>* failures) {
  Mapper& mp = mapper();
  std::vector<Job> mine;
  {
    std::unique_lock<std::mutex> lock(mp.m);
    mp.idle.wait(lock, [&] { return mp.queue.empty() && mp.busy == 0; });
    std::vector<Job> others;
    for (Job& j : mp.finished) (j.pool == poolId ? mine : others).push_back(j);
    mp.finished.swap(others);
  }
  auto pit = gPools.find(poolId);
  if (pit == gPools.end()) return;
  Pool& p = pit->second;
  for (const Job& j : mine) {
    p.backgroundMaps++;
    p.backgroundMapNs += j.ns;
    if (j.err == 0) continue;
    p.backgroundFailures++;
    auto rit = gReservations.find(j.reservation);
    if (rit != gReservations.end()) rit->second.chunkAt[j.offset / p.chunkBytes] = -1;
    p.mapCount[j.chunk]--;
    p.mappedChunks--;
    if (failures != nullptr) failures->push_back({j.reservation, j.offset, j.chunk, j.err});
  }
  p.pendingMaps = 0;
}

}  // namespace vmem
}  // namespace flexinfer

FLEXINFER_MODULE(vmem_async) {
  exports.Set("vmemMapAsync", Napi::Function::New(env, flexinfer::vmem::MapAsync));
  exports.Set("vmemDrain", Napi::Function::New(env, flexinfer::vmem::Drain));
  exports.Set("vmemDebugFailNextMaps", Napi::Function::New(env, flexinfer::vmem::DebugFailNextMaps));
}
