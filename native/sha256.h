// The asynchronous sha256 of native/sha256.cc, registered on the addon's exports.
#pragma once
#include <napi.h>

void RegisterSha256(Napi::Env env, Napi::Object exports);
