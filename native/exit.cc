// exitNow(code): ends the process at once with _exit(2), without Node's teardown (freeing the heap,
// joining its threads: 25-30 ms of a `starling mount` command, measured, which then has nothing left
// to do but exit). Node has no call for it: process.exit and process.reallyExit both tear down.
#include "exit.h"

#include <unistd.h>

namespace {

Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  _exit(info[0].As<Napi::Number>().Int32Value());
}

}  // namespace

void RegisterExit(Napi::Env env, Napi::Object exports) { exports.Set("exitNow", Napi::Function::New(env, ExitNow)); }
