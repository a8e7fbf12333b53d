// Shared helpers of io.cc and io_streamer.cc (argument checks, pread loop, page-cache advice).
#pragma once
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace flexinfer {
namespace io {

// One pread call reads at most this much (Linux caps a read at ~2 GiB; smaller calls also let
// an O_DIRECT read keep its 4096 alignment on every call).
constexpr uint64_t kMaxReadChunk = 64ull << 20;

// Alignment O_DIRECT needs for file offset, length and memory address on every device we know.
constexpr uint64_t kDirectAlign = 4096;

// A buffer argument: ArrayBuffer or typed array (then offsets are relative to the view).
struct BufferRange {
  uint8_t* data = nullptr;
  uint64_t capacity = 0;
  Napi::Object object;  // the JS object, to keep alive while a read is in flight
};

std::string errnoMessage(const std::string& what, int err);
bool isWholeNonNegative(double x);
uint64_t uintArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name);
BufferRange bufferArg(const Napi::CallbackInfo& info, size_t i, const char* fn);
// Throws a RangeError unless [byteOffset, byteOffset + length) lies inside the buffer.
void checkRange(Napi::Env env, const char* fn, const BufferRange& buf, uint64_t byteOffset, uint64_t length);

// Reads exactly `length` bytes (or up to EOF when allowShort) with a pread loop. Returns the
// bytes read, or -1 with *error set (strerror text).
int64_t preadFully(int fd, uint8_t* dst, uint64_t length, uint64_t fileOffset, bool allowShort, std::string* error);

// posix_fadvise(DONTNEED) over the pages covering [offset, offset + length).
void adviseDontNeed(int fd, uint64_t offset, uint64_t length);

}  // namespace io
}  // namespace flexinfer
