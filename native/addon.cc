// Starling's native addon: what Node cannot do well in JS, each part registered from its own file.
//   gzip_index.cc: gzip checkpoint indexing and inflating from a checkpoint (docs/gzip-index.md);
//   sha256.cc: sha256 on the libuv pool, for chunk digests off the JS thread;
//   exit.cc: exiting without Node's teardown;
//   mount.cc: mount(2) and umount2(2) off the JS thread.
#include "exit.h"
#include "gzip_index.h"
#include "mount.h"
#include "sha256.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  RegisterGzipIndex(env, exports);
  RegisterSha256(env, exports);
  RegisterExit(env, exports);
  RegisterMount(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(starling_native, Init)
