// mount(source, target, fstype, data) and unmount(target, detach): mount(2) and umount2(2) on the
// libuv pool. Spawning mount(8) for a mount's overlay took 12-26 ms (fork of the daemon, exec,
// libmount), ~15 ms of it on the JS thread; Node has no call for either. Never on the JS thread:
// mounting an overlay looks up its lower directories, which are FUSE mounts that thread serves.
#include "mount.h"

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

class MountWorker : public Napi::AsyncWorker {
 public:
  // An unmount when fstype is empty (then `detach` says MNT_DETACH).
  MountWorker(Napi::Env env, std::string source, std::string target, std::string fstype, std::string data, bool detach)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        source_(std::move(source)),
        target_(std::move(target)),
        fstype_(std::move(fstype)),
        data_(std::move(data)),
        detach_(detach) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    const bool unmount = fstype_.empty();
    const int rc = unmount ? umount2(target_.c_str(), detach_ ? MNT_DETACH : 0) : mount(source_.c_str(), target_.c_str(), fstype_.c_str(), 0, data_.c_str());
    if (rc == 0) return;
    errno_ = errno;
    SetError(std::string(unmount ? "umount " : "mount -t " + fstype_ + " on ") + target_ + ": " + std::strerror(errno_));
  }

  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

  void OnError(const Napi::Error& err) override {
    err.Value().Set("errno", Napi::Number::New(Env(), errno_));
    deferred_.Reject(err.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string source_, target_, fstype_, data_;
  bool detach_;
  int errno_ = 0;
};

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), usage);
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Value Mount(const Napi::CallbackInfo& info) {
  const char* usage = "mount(source, target, fstype, data): four strings";
  auto* worker = new MountWorker(info.Env(), StringArg(info, 0, usage), StringArg(info, 1, usage), StringArg(info, 2, usage), StringArg(info, 3, usage), false);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value Unmount(const Napi::CallbackInfo& info) {
  const char* usage = "unmount(target, detach): a string and a boolean";
  std::string target = StringArg(info, 0, usage);
  if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), usage);
  auto* worker = new MountWorker(info.Env(), "", std::move(target), "", "", info[1].As<Napi::Boolean>().Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void RegisterMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("unmount", Napi::Function::New(env, Unmount));
}
