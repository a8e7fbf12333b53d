// The FlexInfer streamer's mechanism: I/O threads that execute read tasks
// "read [fileOffset, fileOffset + length) into buffer at byteOffset", grouped so a caller can
// wait for one group (one layer) while later groups are still being read.
//
// The file is opened twice: with O_DIRECT (bypasses the page cache, so streamed weights do not
// quietly grow the footprint past the budget) and buffered. A task goes direct when its file
// offset and memory address are 4096-aligned and the buffer has room for the length rounded
// up to 4096; otherwise a buffered pread, followed by posix_fadvise(DONTNEED) on the range so
// the page cache drops what was read. Tasks run FIFO, so layer L is read before layer L + 1.
//
//   const s = new IoStreamer(path, { threads: 2, direct: true, dropCache: true });
//   s.submit(group, fileOffset, buffer, byteOffset, length);   // any number per group
//   s.wait(group, timeoutMs);   // blocks (no spinning); throws with strerror on an I/O error
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "io.h"
#include "registry.h"

namespace flexinfer {
namespace io {
namespace {

uint64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct Task {
  uint32_t group;
  uint64_t fileOffset;
  uint8_t* dst;
  uint64_t length;
  bool direct;
};

struct GroupState {
  uint32_t pending = 0;
  uint64_t bytes = 0;
  std::string error;  // first error of the group
};

class IoStreamer : public Napi::ObjectWrap<IoStreamer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "IoStreamer",
                       {InstanceMethod("submit", &IoStreamer::Submit), InstanceMethod("wait", &IoStreamer::Wait),
                        InstanceMethod("pending", &IoStreamer::Pending), InstanceMethod("stats", &IoStreamer::Stats),
                        InstanceMethod("info", &IoStreamer::Info), InstanceMethod("close", &IoStreamer::Close)});
  }

  explicit IoStreamer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<IoStreamer>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "IoStreamer(path, options): path must be a string");
    path_ = info[0].As<Napi::String>().Utf8Value();
    int threads = 2;
    bool wantDirect = true;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Object o = info[1].As<Napi::Object>();
      if (o.Has("threads") && !o.Get("threads").IsUndefined()) {
        double t = o.Get("threads").ToNumber().DoubleValue();
        if (!(t >= 1 && t <= 64) || t != static_cast<int>(t)) {
          throw Napi::RangeError::New(env, "IoStreamer: threads must be an integer in [1, 64], got " + std::to_string(t));
        }
        threads = static_cast<int>(t);
      }
      if (o.Has("direct") && !o.Get("direct").IsUndefined()) wantDirect = o.Get("direct").ToBoolean().Value();
      if (o.Has("dropCache") && !o.Get("dropCache").IsUndefined()) dropCache_ = o.Get("dropCache").ToBoolean().Value();
    }
    bufferedFd_ = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (bufferedFd_ < 0) throw Napi::Error::New(env, errnoMessage("IoStreamer: cannot open " + path_, errno));
    struct stat st;
    if (fstat(bufferedFd_, &st) != 0) {
      int err = errno;
      close(bufferedFd_);
      throw Napi::Error::New(env, errnoMessage("IoStreamer: cannot stat " + path_, err));
    }
    fileSize_ = static_cast<uint64_t>(st.st_size);
    if (wantDirect) {
      directFd_ = open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
      if (directFd_ < 0) directError_ = errnoMessage("O_DIRECT open", errno);  // e.g. tmpfs: buffered only
    }
    for (int i = 0; i < threads; i++) threads_.emplace_back([this] { workerLoop(); });
  }

  ~IoStreamer() override { shutdown(); }

 private:
  // submit(group, fileOffset, buffer, byteOffset, length) -> "direct" | "buffered"
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "IoStreamer.submit: the streamer is closed");
    uint64_t group = uintArg(info, 0, "IoStreamer.submit", "group");
    if (group > 0xffffffffull) throw Napi::RangeError::New(env, "IoStreamer.submit: group must fit in 32 bits");
    uint64_t fileOffset = uintArg(info, 1, "IoStreamer.submit", "fileOffset");
    BufferRange buf = bufferArg(info, 2, "IoStreamer.submit");
    uint64_t byteOffset = uintArg(info, 3, "IoStreamer.submit", "byteOffset");
    uint64_t length = uintArg(info, 4, "IoStreamer.submit", "length");
    checkRange(env, "IoStreamer.submit", buf, byteOffset, length);
    if (fileOffset > fileSize_ || length > fileSize_ - fileOffset) {
      throw Napi::RangeError::New(env, "IoStreamer.submit: file range [" + std::to_string(fileOffset) + ", " +
                                           std::to_string(fileOffset + length) + ") exceeds the file's " +
                                           std::to_string(fileSize_) + " bytes");
    }
    uint8_t* dst = buf.data + byteOffset;
    uint64_t rounded = (length + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    bool direct = directFd_ >= 0 && fileOffset % kDirectAlign == 0 && reinterpret_cast<uintptr_t>(dst) % kDirectAlign == 0 &&
                  rounded <= buf.capacity - byteOffset;
    uint32_t g = static_cast<uint32_t>(group);
    refs_[g].push_back(Napi::Persistent(buf.object));  // keep the buffer alive while in flight
    {
      std::lock_guard<std::mutex> lock(mu_);
      groups_[g].pending++;
      queue_.push_back(Task{g, fileOffset, dst, length, direct});
    }
    workCv_.notify_one();
    return Napi::String::New(env, direct ? "direct" : "buffered");
  }

  // wait(group, timeoutMs = 0 (none)) -> { bytes, waitNs }. Throws on an I/O error of the group.
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t group = uintArg(info, 0, "IoStreamer.wait", "group");
    uint64_t timeoutMs = info.Length() > 1 && !info[1].IsUndefined() ? uintArg(info, 1, "IoStreamer.wait", "timeoutMs") : 0;
    uint32_t g = static_cast<uint32_t>(group);
    uint64_t t0 = nowNs();
    GroupState state;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto it = groups_.find(g);
      if (it != groups_.end()) {
        auto done = [&] { return groups_[g].pending == 0; };
        if (timeoutMs == 0) {
          doneCv_.wait(lock, done);
        } else if (!doneCv_.wait_for(lock, std::chrono::milliseconds(timeoutMs), done)) {
          throw Napi::Error::New(env, "IoStreamer.wait: group " + std::to_string(g) + " still has " +
                                          std::to_string(groups_[g].pending) + " reads pending after " +
                                          std::to_string(timeoutMs) + " ms (storage stalled?)");
        }
        state = groups_[g];
        groups_.erase(g);
      }
    }
    uint64_t waited = nowNs() - t0;
    waitNs_ += waited;
    refs_.erase(g);
    if (!state.error.empty()) throw Napi::Error::New(env, "I/O error reading " + path_ + ": " + state.error);
    Napi::Object o = Napi::Object::New(env);
    o.Set("bytes", static_cast<double>(state.bytes));
    o.Set("waitNs", static_cast<double>(waited));
    return o;
  }

  Napi::Value Pending(const Napi::CallbackInfo& info) {
    uint64_t group = uintArg(info, 0, "IoStreamer.pending", "group");
    std::lock_guard<std::mutex> lock(mu_);
    auto it = groups_.find(static_cast<uint32_t>(group));
    return Napi::Number::New(info.Env(), it == groups_.end() ? 0 : it->second.pending);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("directBytes", static_cast<double>(directBytes_.load()));
    o.Set("bufferedBytes", static_cast<double>(bufferedBytes_.load()));
    o.Set("directReads", static_cast<double>(directReads_.load()));
    o.Set("bufferedReads", static_cast<double>(bufferedReads_.load()));
    o.Set("directFallbacks", static_cast<double>(directFallbacks_.load()));
    o.Set("busyNs", static_cast<double>(busyNs_.load()));
    o.Set("waitNs", static_cast<double>(waitNs_));
    return o;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("path", path_);
    o.Set("fileSize", static_cast<double>(fileSize_));
    o.Set("threads", static_cast<double>(threads_.size()));
    o.Set("directAvailable", directFd_ >= 0);
    if (!directError_.empty()) o.Set("directError", directError_);
    o.Set("dropCache", dropCache_);
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    shutdown();
    refs_.clear();
    return info.Env().Undefined();
  }

  // Stops the threads after the reads in flight (queued reads are dropped), closes the files.
  void shutdown() {
    if (closed_) return;
    closed_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      for (const Task& t : queue_) {  // dropped reads fail their groups, so no wait() hangs
        GroupState& g = groups_[t.group];
        g.pending--;
        if (g.error.empty()) g.error = "the streamer was closed before this read ran";
      }
      queue_.clear();
    }
    workCv_.notify_all();
    doneCv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    if (bufferedFd_ >= 0) close(bufferedFd_);
    if (directFd_ >= 0) close(directFd_);
    bufferedFd_ = directFd_ = -1;
  }

  void workerLoop() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        workCv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        task = queue_.front();
        queue_.pop_front();
      }
      std::string error;
      uint64_t t0 = nowNs();
      run(task, &error);
      busyNs_ += nowNs() - t0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        GroupState& g = groups_[task.group];
        g.pending--;
        g.bytes += task.length;
        if (!error.empty() && g.error.empty()) g.error = error;
      }
      doneCv_.notify_all();
    }
  }

  void run(const Task& task, std::string* error) {
    if (task.direct) {
      uint64_t rounded = (task.length + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
      // The rounded tail may run past the end of the file: a short read is fine there.
      int64_t n = preadFully(directFd_, task.dst, rounded, task.fileOffset, true, error);
      if (n >= 0 && static_cast<uint64_t>(n) >= task.length) {
        directBytes_ += task.length;
        directReads_++;
        return;
      }
      // EINVAL: this device wants another alignment; fall back to a buffered read.
      if (n >= 0) *error = "unexpected end of file at offset " + std::to_string(task.fileOffset + n);
      if (n >= 0 || error->find(strerror(EINVAL)) == std::string::npos) return;
      error->clear();
      directFallbacks_++;
    }
    if (preadFully(bufferedFd_, task.dst, task.length, task.fileOffset, false, error) < 0) return;
    if (dropCache_) adviseDontNeed(bufferedFd_, task.fileOffset, task.length);
    bufferedBytes_ += task.length;
    bufferedReads_++;
  }

  std::string path_;
  uint64_t fileSize_ = 0;
  int bufferedFd_ = -1;
  int directFd_ = -1;
  std::string directError_;
  bool dropCache_ = true;
  bool closed_ = false;

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable workCv_;
  std::condition_variable doneCv_;
  std::deque<Task> queue_;
  std::unordered_map<uint32_t, GroupState> groups_;
  bool stopping_ = false;

  // JS thread only: references that keep in-flight buffers alive, per group.
  std::unordered_map<uint32_t, std::vector<Napi::ObjectReference>> refs_;

  std::atomic<uint64_t> directBytes_{0}, bufferedBytes_{0}, directReads_{0}, bufferedReads_{0}, directFallbacks_{0};
  std::atomic<uint64_t> busyNs_{0};
  uint64_t waitNs_ = 0;
};

}  // namespace
}  // namespace io
}  // namespace flexinfer

FLEXINFER_MODULE(io_streamer) { exports.Set("IoStreamer", flexinfer::io::IoStreamer::Define(env)); }
