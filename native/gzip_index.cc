// The addon's gzip functions (docs/gzip-index.md): what Node's zlib cannot do.
//   GzipIndexer: one streaming pass over a gzip blob (one or more members) that hands back the
//     uncompressed bytes and, every `span` bytes of output, a checkpoint at a deflate block boundary
//     (compressed offset, uncompressed offset, bit count, 32 KiB window), as zlib's examples/zran.c.
//   extractSpan: inflate from such a checkpoint (inflatePrime + inflateSetDictionary, raw deflate),
//     across gzip member boundaries, into a buffer of exactly the wanted length.
//   inflateChunk: the same from the start of a gzip member (an eStargz chunk), with the sha256 of
//     the output in the same pool job.
// All inflating runs in Napi::AsyncWorker::Execute, on the libuv pool, never on the JS thread.
#include "gzip_index.h"

#include <openssl/evp.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr unsigned kWindowSize = 32768;

struct Checkpoint {
  uint64_t in;   // compressed bytes before the checkpoint (the block starts inside byte in-1 when bits > 0)
  uint64_t out;  // uncompressed bytes before the checkpoint
  int bits;      // bits of byte in-1 that belong to the block (0-7)
  std::vector<uint8_t> window;
};

void FreeMalloced(Napi::Env, uint8_t* data) { std::free(data); }

// A malloc'ed block handed to JS as a Buffer without a copy.
Napi::Buffer<uint8_t> TakeBuffer(Napi::Env env, uint8_t* data, size_t length) {
  if (data == nullptr) return Napi::Buffer<uint8_t>::New(env, 0);
  return Napi::Buffer<uint8_t>::New(env, data, length, FreeMalloced);
}

std::string ZlibMessage(const z_stream& s, int ret) {
  if (s.msg != nullptr) return s.msg;
  return "zlib error " + std::to_string(ret);
}

class GzipIndexer : public Napi::ObjectWrap<GzipIndexer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "GzipIndexer", {InstanceMethod("inflate", &GzipIndexer::Inflate)});
  }

  explicit GzipIndexer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GzipIndexer>(info) {
    if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().DoubleValue() < 1) {
      throw Napi::TypeError::New(info.Env(), "GzipIndexer(span): span must be a positive number of bytes");
    }
    span_ = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
    std::memset(&strm_, 0, sizeof strm_);
    // 15 + 16: gzip only (a zlib or raw stream is not a layer).
    if (inflateInit2(&strm_, 15 + 16) != Z_OK) throw Napi::Error::New(info.Env(), "inflateInit2 failed");
  }

  ~GzipIndexer() override { inflateEnd(&strm_); }

 private:
  friend class IndexWorker;

  // inflate(input: Buffer, outCapacity: number, last: boolean) → Promise<{consumed, output, checkpoints, end}>
  Napi::Value Inflate(const Napi::CallbackInfo& info);

  // Runs on the pool. Inflates from `in` until the input is used up, `cap` bytes came out, or an error.
  bool Step(const uint8_t* in, size_t len, uint8_t* out, size_t cap, bool last, size_t* consumed, size_t* produced,
            std::vector<Checkpoint>* checkpoints, std::string* error) {
    strm_.next_in = const_cast<Bytef*>(in);
    strm_.avail_in = static_cast<uInt>(len);
    strm_.next_out = out;
    strm_.avail_out = static_cast<uInt>(cap);
    bool ok = true;
    // Also runs with no input left: inflate may still hold output that did not fit last time.
    while (strm_.avail_out > 0) {
      if (member_ended_) {
        if (strm_.avail_in == 0) break;
        // The next gzip member starts here: its header is parsed, the window starts empty.
        inflateReset(&strm_);
        member_ended_ = false;
      }
      const uInt before_in = strm_.avail_in;
      const uInt before_out = strm_.avail_out;
      const int ret = inflate(&strm_, Z_BLOCK);
      total_in_ += before_in - strm_.avail_in;
      total_out_ += before_out - strm_.avail_out;
      if (ret == Z_BUF_ERROR) break;  // no progress possible without more input
      if (ret == Z_STREAM_END) {
        member_ended_ = true;
        members_++;
        continue;
      }
      if (ret != Z_OK) {
        const std::string where = members_ > 0 ? "data after gzip member " + std::to_string(members_) + ": "
                                  : total_out_ == 0 ? "not a gzip stream: " : std::string();
        *error = where + ZlibMessage(strm_, ret) + " (compressed offset " + std::to_string(total_in_) + ")";
        ok = false;
        break;
      }
      // At a block boundary that is not the end of a member (zran.c's test): a place to resume from.
      if ((strm_.data_type & 128) && !(strm_.data_type & 64) && (!any_ || total_out_ - last_out_ >= span_)) {
        Checkpoint cp{total_in_, total_out_, strm_.data_type & 7, std::vector<uint8_t>(kWindowSize)};
        uInt have = kWindowSize;
        inflateGetDictionary(&strm_, cp.window.data(), &have);
        cp.window.resize(have);
        checkpoints->push_back(std::move(cp));
        any_ = true;
        last_out_ = total_out_;
      }
    }
    *consumed = len - strm_.avail_in;
    *produced = cap - strm_.avail_out;
    if (ok && last && strm_.avail_in == 0 && strm_.avail_out > 0 && !member_ended_) {
      *error = members_ == 0 && total_out_ == 0 ? "not a gzip stream: input ends inside the first member's header"
                                                : "truncated gzip: input ends inside member " + std::to_string(members_ + 1) +
                                                      " (compressed offset " + std::to_string(total_in_) + ")";
      ok = false;
    }
    return ok;
  }

  z_stream strm_;
  uint64_t span_ = 0;
  uint64_t total_in_ = 0;
  uint64_t total_out_ = 0;
  uint64_t last_out_ = 0;
  uint64_t members_ = 0;
  bool any_ = false;
  bool member_ended_ = false;
  bool busy_ = false;
};

class IndexWorker : public Napi::AsyncWorker {
 public:
  IndexWorker(Napi::Env env, GzipIndexer* indexer, Napi::Buffer<uint8_t> input, size_t cap, bool last)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        indexer_(indexer),
        input_(input.Data()),
        length_(input.Length()),
        cap_(cap),
        last_(last) {
    input_ref_ = Napi::Persistent(input);
    indexer_ref_ = Napi::Persistent(indexer->Value());
  }
  ~IndexWorker() override { std::free(out_); }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    out_ = cap_ > 0 ? static_cast<uint8_t*>(std::malloc(cap_)) : nullptr;
    if (cap_ > 0 && out_ == nullptr) return SetError("out of memory for " + std::to_string(cap_) + " bytes of output");
    std::string error;
    if (!indexer_->Step(input_, length_, out_, cap_, last_, &consumed_, &produced_, &checkpoints_, &error)) SetError(error);
    ended_ = indexer_->member_ended_;
  }

  void OnOK() override {
    Napi::Env env = Env();
    indexer_->busy_ = false;
    Napi::Object result = Napi::Object::New(env);
    result.Set("consumed", Napi::Number::New(env, static_cast<double>(consumed_)));
    result.Set("output", TakeBuffer(env, out_, produced_));
    out_ = nullptr;
    Napi::Array cps = Napi::Array::New(env, checkpoints_.size());
    for (size_t i = 0; i < checkpoints_.size(); i++) {
      const Checkpoint& c = checkpoints_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("in", Napi::Number::New(env, static_cast<double>(c.in)));
      o.Set("out", Napi::Number::New(env, static_cast<double>(c.out)));
      o.Set("bits", Napi::Number::New(env, c.bits));
      o.Set("window", Napi::Buffer<uint8_t>::Copy(env, c.window.data(), c.window.size()));
      cps[i] = o;
    }
    result.Set("checkpoints", cps);
    // Between members: the input may end here (or the next member follow).
    result.Set("end", Napi::Boolean::New(env, ended_));
    deferred_.Resolve(result);
  }

  void OnError(const Napi::Error& e) override {
    indexer_->busy_ = false;
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  GzipIndexer* indexer_;
  Napi::Reference<Napi::Buffer<uint8_t>> input_ref_;
  Napi::ObjectReference indexer_ref_;
  const uint8_t* input_;
  size_t length_;
  size_t cap_;
  bool last_;
  uint8_t* out_ = nullptr;
  size_t consumed_ = 0;
  size_t produced_ = 0;
  bool ended_ = false;
  std::vector<Checkpoint> checkpoints_;
};

Napi::Value GzipIndexer::Inflate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsBoolean()) {
    throw Napi::TypeError::New(env, "inflate(input: Buffer, outCapacity: number, last: boolean)");
  }
  const double cap = info[1].As<Napi::Number>().DoubleValue();
  if (!(cap >= 1 && cap <= (1u << 30))) throw Napi::RangeError::New(env, "outCapacity must be 1 byte to 1 GiB");
  if (info[0].As<Napi::Buffer<uint8_t>>().Length() > (1u << 30)) throw Napi::RangeError::New(env, "input must be at most 1 GiB");
  // One z_stream: calls must not overlap (each continues where the previous one stopped).
  if (busy_) throw Napi::Error::New(env, "GzipIndexer.inflate called while a previous call is still running");
  busy_ = true;
  auto* worker = new IndexWorker(env, this, info[0].As<Napi::Buffer<uint8_t>>(), static_cast<size_t>(cap), info[2].As<Napi::Boolean>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// Inflates into a buffer of exactly `want` bytes: from a checkpoint (raw deflate, primed with bits
// and a window), or from the start of a gzip member (`gzip`); with `hash_from` >= 0, also takes the
// sha256 of output [hash_from, want) in the same pool job (a chunk's verification).
class ExtractWorker : public Napi::AsyncWorker {
 public:
  ExtractWorker(Napi::Env env, Napi::Buffer<uint8_t> input, int bits, Napi::Buffer<uint8_t> window, size_t want, bool gzip = false, int64_t hash_from = -1)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        input_(input.Data()),
        length_(input.Length()),
        bits_(bits),
        window_(window.Data()),
        window_length_(window.Length()),
        want_(want),
        gzip_(gzip),
        hash_from_(hash_from) {
    input_ref_ = Napi::Persistent(input);
    window_ref_ = Napi::Persistent(window);
  }
  ~ExtractWorker() override { std::free(out_); }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    out_ = static_cast<uint8_t*>(std::malloc(want_ > 0 ? want_ : 1));
    if (out_ == nullptr) return SetError("out of memory for " + std::to_string(want_) + " bytes of output");
    z_stream s;
    std::memset(&s, 0, sizeof s);
    if (inflateInit2(&s, gzip_ ? 15 + 16 : -15) != Z_OK) return SetError("inflateInit2 failed");
    std::string error = Run(&s);
    inflateEnd(&s);
    if (!error.empty()) return SetError(error);
    unsigned int size = 0;
    if (hash_from_ >= 0 && (EVP_Digest(out_ + hash_from_, want_ - hash_from_, digest_, &size, EVP_sha256(), nullptr) != 1 || size != sizeof digest_)) {
      SetError("EVP_Digest(sha256) failed");
    }
  }

  void OnOK() override {
    Napi::Buffer<uint8_t> out = TakeBuffer(Env(), out_, want_);
    out_ = nullptr;
    if (hash_from_ < 0) return deferred_.Resolve(out);
    Napi::Array both = Napi::Array::New(Env(), 2);
    both.Set(0u, out);
    both.Set(1u, Napi::Buffer<uint8_t>::Copy(Env(), digest_, sizeof digest_));
    deferred_.Resolve(both);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::string Run(z_stream* s) {
    const uint8_t* in = input_;
    size_t avail = length_;
    if (bits_ > 0) {
      if (avail == 0) return "no compressed bytes for a checkpoint with " + std::to_string(bits_) + " bits";
      // The block starts with the top `bits_` bits of the byte before the checkpoint.
      if (inflatePrime(s, bits_, in[0] >> (8 - bits_)) != Z_OK) return "inflatePrime failed";
      in++;
      avail--;
    }
    if (window_length_ > 0 && inflateSetDictionary(s, window_, static_cast<uInt>(window_length_)) != Z_OK) {
      return "inflateSetDictionary failed";
    }
    s->next_in = const_cast<Bytef*>(in);
    s->avail_in = static_cast<uInt>(avail);
    s->next_out = out_;
    s->avail_out = static_cast<uInt>(want_);
    bool raw = !gzip_;
    while (s->avail_out > 0) {
      const int ret = inflate(s, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        if (s->avail_out == 0) break;
        if (raw) {
          // The raw deflate stream of the checkpoint's member ended: skip its trailer (CRC32, ISIZE)
          // and let zlib parse (and check) every following member whole, header to trailer.
          if (s->avail_in < 8) return "compressed input ends inside a gzip trailer";
          s->next_in += 8;
          s->avail_in -= 8;
          if (inflateReset2(s, 15 + 16) != Z_OK) return "inflateReset2 failed";
          raw = false;
        } else {
          inflateReset(s);
        }
        if (s->avail_in == 0) break;
        continue;
      }
      if (ret != Z_OK && ret != Z_BUF_ERROR) return "span does not inflate: " + ZlibMessage(*s, ret);
      if (ret == Z_BUF_ERROR || s->avail_in == 0) break;
    }
    if (s->avail_out > 0) {
      return "compressed input ends after " + std::to_string(want_ - s->avail_out) + " of " + std::to_string(want_) +
             " uncompressed bytes";
    }
    return std::string();
  }

  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Buffer<uint8_t>> input_ref_;
  Napi::Reference<Napi::Buffer<uint8_t>> window_ref_;
  const uint8_t* input_;
  size_t length_;
  int bits_;
  const uint8_t* window_;
  size_t window_length_;
  size_t want_;
  bool gzip_;
  int64_t hash_from_;
  uint8_t digest_[32];
  uint8_t* out_ = nullptr;
};

// extractSpan(input: Buffer, bits: number, window: Buffer, want: number) → Promise<Buffer>
Napi::Value ExtractSpan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsBuffer() || !info[3].IsNumber()) {
    throw Napi::TypeError::New(env, "extractSpan(input: Buffer, bits: number, window: Buffer, want: number)");
  }
  const int32_t bits = info[1].As<Napi::Number>().Int32Value();
  const double want = info[3].As<Napi::Number>().DoubleValue();
  const size_t window = info[2].As<Napi::Buffer<uint8_t>>().Length();
  if (bits < 0 || bits > 7) throw Napi::RangeError::New(env, "bits must be 0 to 7");
  if (window > kWindowSize) throw Napi::RangeError::New(env, "window must be at most 32 KiB");
  if (!(want >= 0 && want <= (1u << 30))) throw Napi::RangeError::New(env, "want must be 0 to 1 GiB");
  if (info[0].As<Napi::Buffer<uint8_t>>().Length() > (1u << 30)) throw Napi::RangeError::New(env, "input must be at most 1 GiB");
  auto* worker = new ExtractWorker(env, info[0].As<Napi::Buffer<uint8_t>>(), bits, info[2].As<Napi::Buffer<uint8_t>>(), static_cast<size_t>(want));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// inflateChunk(input: Buffer, want: number, hashFrom: number) → Promise<[Buffer, Buffer]>: the first
// `want` bytes of the gzip members in `input`, and the sha256 of those from `hashFrom` on.
Napi::Value InflateChunk(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsBuffer() || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "inflateChunk(input: Buffer, want: number, hashFrom: number)");
  }
  const double want = info[1].As<Napi::Number>().DoubleValue();
  const double hash_from = info[2].As<Napi::Number>().DoubleValue();
  if (!(want >= 0 && want <= (1u << 30))) throw Napi::RangeError::New(env, "want must be 0 to 1 GiB");
  if (!(hash_from >= 0 && hash_from <= want)) throw Napi::RangeError::New(env, "hashFrom must be 0 to want");
  if (info[0].As<Napi::Buffer<uint8_t>>().Length() > (1u << 30)) throw Napi::RangeError::New(env, "input must be at most 1 GiB");
  auto* worker = new ExtractWorker(env, info[0].As<Napi::Buffer<uint8_t>>(), 0, Napi::Buffer<uint8_t>::New(env, 0), static_cast<size_t>(want), true,
                                   static_cast<int64_t>(hash_from));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void RegisterGzipIndex(Napi::Env env, Napi::Object exports) {
  exports.Set("GzipIndexer", GzipIndexer::Define(env));
  exports.Set("extractSpan", Napi::Function::New(env, ExtractSpan));
  exports.Set("inflateChunk", Napi::Function::New(env, InflateChunk));
  exports.Set("zlibVersion", Napi::String::New(env, zlibVersion()));
}
