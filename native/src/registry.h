// Self-registering addon modules.
//
// Each native/src/*.cc adds its exports with FLEXINFER_MODULE(name) { ... } at file scope.
// addon.cc runs every registered function at load time, so modules never edit a shared list.
#pragma once
#include <napi.h>

#include <vector>

namespace flexinfer {

using ModuleInit = void (*)(Napi::Env env, Napi::Object exports);

struct ModuleEntry {
  const char* name;
  ModuleInit init;
};

std::vector<ModuleEntry>& moduleRegistry();

struct ModuleRegistrar {
  ModuleRegistrar(const char* name, ModuleInit init) { moduleRegistry().push_back({name, init}); }
};

}  // namespace flexinfer

#define FLEXINFER_MODULE(NAME)                                                              \
  static void flexinfer_module_init_##NAME(Napi::Env env, Napi::Object exports);            \
  static ::flexinfer::ModuleRegistrar flexinfer_module_registrar_##NAME(#NAME,               \
                                                                         &flexinfer_module_init_##NAME); \
  static void flexinfer_module_init_##NAME(Napi::Env env, Napi::Object exports)
