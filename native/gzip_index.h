// The gzip checkpoint functions of native/gzip_index.cc, registered on the addon's exports.
#pragma once
#include <napi.h>

void RegisterGzipIndex(Napi::Env env, Napi::Object exports);
