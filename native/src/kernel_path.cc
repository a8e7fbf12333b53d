// JS access to the kernel-path switch (see kernel_path.h).
#include <string>

#include "kernel_path.h"
#include "registry.h"

FLEXINFER_MODULE(kernel_path) {
  exports.Set("setKernelPath", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                Napi::Env e = info.Env();
                if (info.Length() < 1 || !info[0].IsString())
                  throw Napi::TypeError::New(e, "setKernelPath: expected 'auto' or 'scalar'");
                std::string p = info[0].As<Napi::String>().Utf8Value();
                if (p == "auto") flexinfer::setScalarKernels(false);
                else if (p == "scalar") flexinfer::setScalarKernels(true);
                else throw Napi::RangeError::New(e, "setKernelPath: unknown path '" + p + "' (expected 'auto' or 'scalar')");
                return e.Undefined();
              }));
  exports.Set("kernelPath", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
                return Napi::String::New(info.Env(), flexinfer::useScalarKernels() ? "scalar" : "auto");
              }));
}
