// File reads for the weight stores: a synchronous pread loop (readInto), page-cache advice
// (fadvise, evict, residency via mincore), and the FlexInfer streamer's I/O threads
// (io_streamer.cc). Mechanism only: which ranges to read and when is decided in TypeScript.
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "registry.h"

namespace flexinfer {
namespace io {

std::string errnoMessage(const std::string& what, int err) { return what + ": " + strerror(err); }

bool isWholeNonNegative(double x) {
  return x >= 0 && x <= 9007199254740991.0 && x == static_cast<double>(static_cast<uint64_t>(x));
}

uint64_t uintArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(fn) + ": " + name + " must be a number");
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!isWholeNonNegative(v)) {
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": " + name + " must be a non-negative integer, got " +
                                                std::to_string(v));
  }
  return static_cast<uint64_t>(v);
}

BufferRange bufferArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  BufferRange r;
  if (info.Length() > i && info[i].IsArrayBuffer()) {
    auto ab = info[i].As<Napi::ArrayBuffer>();
    r.data = static_cast<uint8_t*>(ab.Data());
    r.capacity = ab.ByteLength();
    r.object = ab;
    return r;
  }
  if (info.Length() > i && info[i].IsTypedArray()) {
    auto ta = info[i].As<Napi::TypedArray>();
    auto ab = ta.ArrayBuffer();
    r.data = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
    r.capacity = ta.ByteLength();
    r.object = ta;
    return r;
  }
  throw Napi::TypeError::New(info.Env(), std::string(fn) + ": buffer must be an ArrayBuffer or a typed array");
}

void checkRange(Napi::Env env, const char* fn, const BufferRange& buf, uint64_t byteOffset, uint64_t length) {
  if (byteOffset > buf.capacity || length > buf.capacity - byteOffset) {
    throw Napi::RangeError::New(env, std::string(fn) + ": range [" + std::to_string(byteOffset) + ", " +
                                         std::to_string(byteOffset + length) + ") exceeds the buffer's " +
                                         std::to_string(buf.capacity) + " bytes");
  }
}

int64_t preadFully(int fd, uint8_t* dst, uint64_t length, uint64_t fileOffset, bool allowShort, std::string* error) {
  uint64_t done = 0;
  while (done < length) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(length - done, kMaxReadChunk));
    ssize_t n = pread(fd, dst + done, want, static_cast<off_t>(fileOffset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = errnoMessage("pread of " + std::to_string(want) + " bytes at offset " + std::to_string(fileOffset + done) +
                                " failed",
                            errno);
      return -1;
    }
    if (n == 0) {
      if (allowShort) break;
      *error = "unexpected end of file at offset " + std::to_string(fileOffset + done) + " (wanted " +
               std::to_string(length) + " bytes from offset " + std::to_string(fileOffset) + ")";
      return -1;
    }
    done += static_cast<uint64_t>(n);
  }
  return static_cast<int64_t>(done);
}

void adviseDontNeed(int fd, uint64_t offset, uint64_t length) {
  // Widen to whole pages: the kernel rounds inward, which would leave the edge pages cached.
  const uint64_t page = 4096;
  uint64_t begin = offset / page * page;
  uint64_t end = (offset + length + page - 1) / page * page;
  posix_fadvise(fd, static_cast<off_t>(begin), static_cast<off_t>(end - begin), POSIX_FADV_DONTNEED);
}

namespace {

// An fd argument (number) is used as is; a path (string) is opened for this call only.
struct FileArg {
  int fd = -1;
  bool owned = false;
  ~FileArg() {
    if (owned && fd >= 0) close(fd);
  }
};

void openFileArg(const Napi::CallbackInfo& info, size_t i, const char* fn, FileArg* out) {
  Napi::Env env = info.Env();
  if (info.Length() > i && info[i].IsString()) {
    std::string path = info[i].As<Napi::String>().Utf8Value();
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Napi::Error::New(env, errnoMessage(std::string(fn) + ": cannot open " + path, errno));
    out->fd = fd;
    out->owned = true;
    return;
  }
  if (info.Length() > i && info[i].IsNumber()) {
    double v = info[i].As<Napi::Number>().DoubleValue();
    if (!isWholeNonNegative(v) || v > 1e9) throw Napi::RangeError::New(env, std::string(fn) + ": fd must be a small non-negative integer");
    out->fd = static_cast<int>(v);
    return;
  }
  throw Napi::TypeError::New(env, std::string(fn) + ": first argument must be a path or a file descriptor");
}

// readInto(fdOrPath, fileOffset, buffer, byteOffset, length) -> bytes read (== length).
Napi::Value ReadInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileArg file;
  openFileArg(info, 0, "readInto", &file);
  uint64_t fileOffset = uintArg(info, 1, "readInto", "fileOffset");
  BufferRange buf = bufferArg(info, 2, "readInto");
  uint64_t byteOffset = uintArg(info, 3, "readInto", "byteOffset");
  uint64_t length = uintArg(info, 4, "readInto", "length");
  checkRange(env, "readInto", buf, byteOffset, length);
  std::string error;
  if (preadFully(file.fd, buf.data + byteOffset, length, fileOffset, false, &error) < 0) {
    throw Napi::Error::New(env, "readInto: " + error);
  }
  return Napi::Number::New(env, static_cast<double>(length));
}

// openFile(path, direct) -> fd. direct = true adds O_DIRECT (throws if the file system refuses).
Napi::Value OpenFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "openFile(path, direct): path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  bool direct = info.Length() > 1 && info[1].ToBoolean().Value();
  int flags = O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0);
  int fd = open(path.c_str(), flags);
  if (fd < 0) throw Napi::Error::New(env, errnoMessage(std::string("openFile: cannot open ") + path + (direct ? " with O_DIRECT" : ""), errno));
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileArg file;
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "closeFile(fd): fd must be a number");
  openFileArg(info, 0, "closeFile", &file);
  if (close(file.fd) != 0) throw Napi::Error::New(env, errnoMessage("closeFile", errno));
  return env.Undefined();
}

// fadvise(fdOrPath, offset, length, advice): advice is "dontneed" | "willneed" | "sequential"
// | "random" | "normal". length 0 means to the end of the file.
Napi::Value Fadvise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileArg file;
  openFileArg(info, 0, "fadvise", &file);
  uint64_t offset = uintArg(info, 1, "fadvise", "offset");
  uint64_t length = uintArg(info, 2, "fadvise", "length");
  std::string advice = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  int a;
  if (advice == "dontneed") a = POSIX_FADV_DONTNEED;
  else if (advice == "willneed") a = POSIX_FADV_WILLNEED;
  else if (advice == "sequential") a = POSIX_FADV_SEQUENTIAL;
  else if (advice == "random") a = POSIX_FADV_RANDOM;
  else if (advice == "normal") a = POSIX_FADV_NORMAL;
  else throw Napi::TypeError::New(env, "fadvise: advice must be dontneed, willneed, sequential, random or normal, got '" + advice + "'");
  if (a == POSIX_FADV_DONTNEED) fdatasync(file.fd);  // dirty pages are not dropped; flush them first
  int rc = posix_fadvise(file.fd, static_cast<off_t>(offset), static_cast<off_t>(length), a);
  if (rc != 0) throw Napi::Error::New(env, errnoMessage("posix_fadvise", rc));
  return env.Undefined();
}

// pageCacheResidency(path) -> { residentPages, totalPages }: how much of the file is in the
// page cache now (mincore over a PROT_READ mapping; nothing is read).
Napi::Value PageCacheResidency(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FileArg file;
  openFileArg(info, 0, "pageCacheResidency", &file);
  struct stat st;
  if (fstat(file.fd, &st) != 0) throw Napi::Error::New(env, errnoMessage("fstat", errno));
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t size = static_cast<size_t>(st.st_size);
  size_t pages = (size + page - 1) / page;
  Napi::Object o = Napi::Object::New(env);
  double resident = 0;
  if (size > 0) {
    void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, file.fd, 0);
    if (map == MAP_FAILED) throw Napi::Error::New(env, errnoMessage("mmap for mincore", errno));
    std::vector<unsigned char> vec(pages);
    int rc = mincore(map, size, vec.data());
    int err = errno;
    munmap(map, size);
    if (rc != 0) throw Napi::Error::New(env, errnoMessage("mincore", err));
    for (unsigned char c : vec) resident += (c & 1);
  }
  o.Set("residentPages", resident);
  o.Set("totalPages", static_cast<double>(pages));
  o.Set("pageSize", static_cast<double>(page));
  return o;
}

}  // namespace
}  // namespace io
}  // namespace flexinfer

FLEXINFER_MODULE(io) {
  using namespace flexinfer::io;
  exports.Set("readInto", Napi::Function::New(env, ReadInto));
  exports.Set("openFile", Napi::Function::New(env, OpenFile));
  exports.Set("closeFile", Napi::Function::New(env, CloseFile));
  exports.Set("fadvise", Napi::Function::New(env, Fadvise));
  exports.Set("pageCacheResidency", Napi::Function::New(env, PageCacheResidency));
}
