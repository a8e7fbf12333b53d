// IoStreamer: the JavaScript face of the streaming I/O engine (io_engine.h). Read tasks
// "read [fileOffset, fileOffset + length) into buffer at byteOffset" are tagged with a group
// (one layer) so a caller can wait for one group while later groups are still being read.
//
//   const s = new IoStreamer(path, { depth: 8, pieceBytes: 1 << 20, direct: true });
//   s.submit(group, fileOffset, buffer, byteOffset, length);   // any number per group
//   s.wait(group, timeoutMs);   // blocks (no spinning); throws an Error with .code on failure
//   s.setPath(direct, depth);   // between tokens: switch the read path or the depth
#include <napi.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "io.h"
#include "io_engine.h"
#include "registry.h"

namespace flexinfer {
namespace io {
namespace {

unsigned uintOption(Napi::Env env, Napi::Object o, const char* key, unsigned def, unsigned lo, unsigned hi) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return def;
  double v = o.Get(key).ToNumber().DoubleValue();
  if (!(v >= lo && v <= hi) || v != static_cast<double>(static_cast<unsigned>(v))) {
    throw Napi::RangeError::New(env, std::string("IoStreamer: ") + key + " must be an integer in [" + std::to_string(lo) + ", " +
                                         std::to_string(hi) + "], got " + std::to_string(v));
  }
  return static_cast<unsigned>(v);
}

class IoStreamer : public Napi::ObjectWrap<IoStreamer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "IoStreamer",
                       {InstanceMethod("submit", &IoStreamer::Submit), InstanceMethod("wait", &IoStreamer::Wait),
                        InstanceMethod("pending", &IoStreamer::Pending), InstanceMethod("setPath", &IoStreamer::SetPath),
                        InstanceMethod("stats", &IoStreamer::Stats), InstanceMethod("info", &IoStreamer::Info),
                        InstanceMethod("checkFile", &IoStreamer::CheckFile), InstanceMethod("close", &IoStreamer::Close)});
  }

  explicit IoStreamer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<IoStreamer>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "IoStreamer(path, options): path must be a string");
    EngineOptions o;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Object opts = info[1].As<Napi::Object>();
      if (opts.Has("direct") && !opts.Get("direct").IsUndefined()) o.direct = opts.Get("direct").ToBoolean().Value();
      if (opts.Has("dropCache") && !opts.Get("dropCache").IsUndefined()) o.dropCache = opts.Get("dropCache").ToBoolean().Value();
      if (opts.Has("readAhead") && !opts.Get("readAhead").IsUndefined()) o.readAhead = opts.Get("readAhead").ToBoolean().Value();
      if (opts.Has("dontCache") && !opts.Get("dontCache").IsUndefined()) o.dontCache = opts.Get("dontCache").ToBoolean().Value();
      o.maxDepth = uintOption(env, opts, "maxDepth", 32, 1, 256);
      o.depth = uintOption(env, opts, "depth", std::min(8u, o.maxDepth), 1, o.maxDepth);
      o.pieceBytes = static_cast<uint64_t>(uintOption(env, opts, "pieceBytes", 1u << 20, 4096, 64u << 20));
      if (o.pieceBytes % kDirectAlign != 0) throw Napi::RangeError::New(env, "IoStreamer: pieceBytes must be a multiple of 4096");
      if (opts.Has("engine") && !opts.Get("engine").IsUndefined()) {
        std::string e = opts.Get("engine").ToString().Utf8Value();
        if (e == "auto") o.backend = Backend::Auto;
        else if (e == "io_uring") o.backend = Backend::Uring;
        else if (e == "threads") o.backend = Backend::Threads;
        else throw Napi::TypeError::New(env, "IoStreamer: engine must be 'auto', 'io_uring' or 'threads', got '" + e + "'");
      }
    }
    try {
      engine_ = std::make_unique<IoEngine>(info[0].As<Napi::String>().Utf8Value(), o);
    } catch (const std::exception& e) {
      throw Napi::Error::New(env, std::string("IoStreamer: ") + e.what());
    }
  }

  ~IoStreamer() override {
    if (engine_) engine_->close();
  }

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
    uint64_t fileSize = engine_->fileSize();
    if (fileOffset > fileSize || length > fileSize - fileOffset) {
      throw Napi::RangeError::New(env, "IoStreamer.submit: file range [" + std::to_string(fileOffset) + ", " + std::to_string(fileOffset + length) +
                                           ") exceeds the file's " + std::to_string(fileSize) + " bytes");
    }
    uint32_t g = static_cast<uint32_t>(group);
    refs_[g].push_back(Napi::Persistent(buf.object));  // keep the buffer alive while in flight
    bool direct;
    try {
      direct = engine_->submit(g, fileOffset, buf.data + byteOffset, length, buf.capacity - byteOffset);
    } catch (const std::exception& e) {
      refs_[g].pop_back();
      throw Napi::Error::New(env, std::string("IoStreamer.submit: ") + e.what());
    }
    return Napi::String::New(env, direct ? "direct" : "buffered");
  }

  // wait(group, timeoutMs = 0 (none)) -> { bytes, waitNs }. Throws on a failed read of the
  // group (Error with code = errno name, "EOF" or "ECANCELED", and fileOffset) or on timeout
  // (code "ETIMEDOUT").
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t group = uintArg(info, 0, "IoStreamer.wait", "group");
    uint64_t timeoutMs = info.Length() > 1 && !info[1].IsUndefined() ? uintArg(info, 1, "IoStreamer.wait", "timeoutMs") : 0;
    uint32_t g = static_cast<uint32_t>(group);
    uint64_t t0 = nowNs();
    GroupResult r;
    if (!engine_->wait(g, timeoutMs, &r)) {
      Napi::Error e = Napi::Error::New(env, "IoStreamer.wait: group " + std::to_string(g) + " still has " + std::to_string(engine_->pending(g)) +
                                                " reads pending after " + std::to_string(timeoutMs) + " ms (storage stalled?)");
      e.Set("code", "ETIMEDOUT");
      throw e;
    }
    uint64_t waited = nowNs() - t0;
    waitNs_ += waited;
    refs_.erase(g);
    if (r.failed) {
      Napi::Error e = Napi::Error::New(env, "I/O error reading " + engine_->path() + ": " + r.error.message);
      e.Set("code", r.error.code);
      e.Set("fileOffset", static_cast<double>(r.error.fileOffset));
      throw e;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("bytes", static_cast<double>(r.bytes));
    o.Set("waitNs", static_cast<double>(waited));
    return o;
  }

  Napi::Value Pending(const Napi::CallbackInfo& info) {
    uint64_t group = uintArg(info, 0, "IoStreamer.pending", "group");
    return Napi::Number::New(info.Env(), engine_->pending(static_cast<uint32_t>(group)));
  }

  // setPath(direct, depth): the read path and pieces in flight for reads taken from now on.
  Napi::Value SetPath(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool direct = info.Length() > 0 && info[0].ToBoolean().Value();
    uint64_t depth = uintArg(info, 1, "IoStreamer.setPath", "depth");
    if (depth < 1 || depth > engine_->maxDepth()) {
      throw Napi::RangeError::New(env, "IoStreamer.setPath: depth must be in [1, " + std::to_string(engine_->maxDepth()) + "], got " + std::to_string(depth));
    }
    engine_->setPath(direct, static_cast<unsigned>(depth));
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EngineStats s = engine_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("directBytes", static_cast<double>(s.bytes[1]));
    o.Set("bufferedBytes", static_cast<double>(s.bytes[0]));
    o.Set("directReads", static_cast<double>(s.reads[1]));
    o.Set("bufferedReads", static_cast<double>(s.reads[0]));
    o.Set("directBusyNs", static_cast<double>(s.busyNs[1]));
    o.Set("bufferedBusyNs", static_cast<double>(s.busyNs[0]));
    o.Set("busyNs", static_cast<double>(s.anyBusyNs));
    o.Set("inflightNs", static_cast<double>(s.inflightNs));
    o.Set("inflight", static_cast<double>(s.inflight));
    o.Set("maxInflight", static_cast<double>(s.maxInflight));
    o.Set("queued", static_cast<double>(s.queued));
    o.Set("directFallbacks", static_cast<double>(s.directFallbacks));
    o.Set("shortReads", static_cast<double>(s.shortReads));
    o.Set("dontCacheFallbacks", static_cast<double>(s.dontCacheFallbacks));
    o.Set("latencyP50Us", s.latencyUs[0]);
    o.Set("latencyP90Us", s.latencyUs[1]);
    o.Set("latencyP99Us", s.latencyUs[2]);
    o.Set("waitNs", static_cast<double>(waitNs_));
    return o;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("path", engine_->path());
    o.Set("fileSize", static_cast<double>(engine_->fileSize()));
    o.Set("engine", engine_->backendName());
    if (!engine_->uringError().empty()) o.Set("engineError", engine_->uringError());
    o.Set("depth", static_cast<double>(engine_->depth()));
    o.Set("maxDepth", static_cast<double>(engine_->maxDepth()));
    o.Set("pieceBytes", static_cast<double>(engine_->pieceBytes()));
    o.Set("direct", engine_->direct());
    o.Set("directAvailable", engine_->directAvailable());
    if (!engine_->directError().empty()) o.Set("directError", engine_->directError());
    o.Set("dropCache", engine_->dropCache());
    o.Set("readAhead", engine_->readAhead());
    o.Set("dontCache", engine_->dontCache());
    std::string dcError = engine_->dontCacheError();
    if (!dcError.empty()) o.Set("dontCacheError", dcError);
    return o;
  }

  // checkFile() -> null, or { reason: 'truncated' | 'modified' | 'replaced' | 'deleted', detail }
  Napi::Value CheckFile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string detail;
    std::string reason = engine_->checkFile(&detail);
    if (reason.empty()) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("reason", reason);
    o.Set("detail", detail);
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    closed_ = true;
    engine_->close();
    refs_.clear();
    return info.Env().Undefined();
  }

  std::unique_ptr<IoEngine> engine_;
  bool closed_ = false;
  uint64_t waitNs_ = 0;
  // JS thread only: references that keep in-flight buffers alive, per group.
  std::unordered_map<uint32_t, std::vector<Napi::ObjectReference>> refs_;
};

}  // namespace
}  // namespace io
}  // namespace flexinfer

FLEXINFER_MODULE(io_streamer) { exports.Set("IoStreamer", flexinfer::io::IoStreamer::Define(env)); }
