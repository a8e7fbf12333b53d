// What to tell a user when mlock fails: strerror, plus the RLIMIT_MEMLOCK value and how to
// raise it when the limit is the likely cause. Shared by memory.cc and memory_region.cc.
#pragma once
#include <string>

namespace flexinfer {
std::string memlockHint(int err);
}  // namespace flexinfer
