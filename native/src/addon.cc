// Addon entry point: runs every module registered with FLEXINFER_MODULE.
#include "registry.h"

namespace flexinfer {

std::vector<ModuleEntry>& moduleRegistry() {
  static std::vector<ModuleEntry> registry;  // function-local: safe against init order
  return registry;
}

}  // namespace flexinfer

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (const auto& entry : flexinfer::moduleRegistry()) entry.init(env, exports);
  return exports;
}

NODE_API_MODULE(flexinfer, Init)
