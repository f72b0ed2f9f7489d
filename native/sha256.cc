// sha256 of a buffer on the libuv pool (Node 20 has no asynchronous hash: crypto's createHash runs
// on the JS thread, and WebCrypto's digest turned out to as well). Uses the OpenSSL that node itself
// exports to addons (its headers are installed with node's, under include/node/openssl).
#include "sha256.h"

#include <openssl/evp.h>

#include <cstdint>

namespace {

class Sha256Worker : public Napi::AsyncWorker {
 public:
  Sha256Worker(Napi::Env env, Napi::Buffer<uint8_t> input)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), ref_(Napi::Persistent(input)), data_(input.Data()), length_(input.Length()) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    unsigned int size = 0;
    if (EVP_Digest(data_, length_, digest_, &size, EVP_sha256(), nullptr) != 1 || size != sizeof(digest_)) SetError("EVP_Digest(sha256) failed");
  }

  void OnOK() override { deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(Env(), digest_, sizeof(digest_))); }
  void OnError(const Napi::Error& err) override { deferred_.Reject(err.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Buffer<uint8_t>> ref_;  // keeps the input alive while the pool reads it
  const uint8_t* data_;
  size_t length_;
  uint8_t digest_[32];
};

Napi::Value Sha256(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "sha256(data): data must be a Buffer");
  auto* worker = new Sha256Worker(env, info[0].As<Napi::Buffer<uint8_t>>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void RegisterSha256(Napi::Env env, Napi::Object exports) { exports.Set("sha256", Napi::Function::New(env, Sha256)); }
