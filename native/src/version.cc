// Addon version and build facts (which SIMD paths this build was compiled with).
#include "registry.h"

#ifndef FLEXINFER_NATIVE_VERSION
#define FLEXINFER_NATIVE_VERSION "0.1.0"
#endif

FLEXINFER_MODULE(version) {
  exports.Set("version", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Napi::String::New(info.Env(), FLEXINFER_NATIVE_VERSION);
              }));
  exports.Set("buildInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                Napi::Env e = info.Env();
                Napi::Object o = Napi::Object::New(e);
#if defined(__AVX512F__)
                o.Set("avx512f", true);
#else
                o.Set("avx512f", false);
#endif
#if defined(__AVX512VNNI__)
                o.Set("avx512vnni", true);
#else
                o.Set("avx512vnni", false);
#endif
#if defined(__AVX2__)
                o.Set("avx2", true);
#else
                o.Set("avx2", false);
#endif
#if defined(__F16C__)
                o.Set("f16c", true);
#else
                o.Set("f16c", false);
#endif
                o.Set("compiler", __VERSION__);
                return o;
              }));
}
