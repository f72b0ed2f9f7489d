// mount(source, target, fstype, data) and unmount(target, detach): mount(2) and umount2(2) on the
// libuv pool. Spawning mount(8) for a mount's overlay took 12-26 ms (fork of the daemon, exec,
// libmount), ~15 ms of it on the JS thread; Node has no call for either. Never on the JS thread:
// mounting an overlay looks up its lower directories, which are FUSE mounts that thread serves.
#include "mount.h"

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

namespace {

// One mount(2) or umount2(2) call: `call` runs on the pool and returns its rc; `what` names it in the error.
class MountWorker : public Napi::AsyncWorker {
 public:
  MountWorker(Napi::Env env, std::string what, std::function<int()> call)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), what_(std::move(what)), call_(std::move(call)) {}

  Napi::Promise Queued() {
    Napi::Promise promise = deferred_.Promise();
    Queue();
    return promise;
  }

  void Execute() override {
    if (call_() == 0) return;
    errno_ = errno;
    SetError(what_ + ": " + std::strerror(errno_));
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

  void OnError(const Napi::Error& err) override {
    err.Value().Set("errno", Napi::Number::New(Env(), errno_));
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string what_;
  std::function<int()> call_;
  int errno_ = 0;
};

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), usage);
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Value Mount(const Napi::CallbackInfo& info) {
  const char* usage = "mount(source, target, fstype, data): four strings";
  std::string source = StringArg(info, 0, usage), target = StringArg(info, 1, usage), fstype = StringArg(info, 2, usage), data = StringArg(info, 3, usage);
  std::string what = "mount -t " + fstype + " on " + target;
  auto call = [source, target, fstype, data] { return mount(source.c_str(), target.c_str(), fstype.c_str(), 0, data.c_str()); };
  return (new MountWorker(info.Env(), what, call))->Queued();
}

Napi::Value Unmount(const Napi::CallbackInfo& info) {
  const char* usage = "unmount(target, detach): a string and a boolean";
  std::string target = StringArg(info, 0, usage);
  if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), usage);
  const int flags = info[1].As<Napi::Boolean>().Value() ? MNT_DETACH : 0;
  return (new MountWorker(info.Env(), "umount " + target, [target, flags] { return umount2(target.c_str(), flags); }))->Queued();
}

}  // namespace

void RegisterMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("unmount", Napi::Function::New(env, Unmount));
}
