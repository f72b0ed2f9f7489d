// exitNow of native/exit.cc, registered on the addon's exports.
#pragma once
#include <napi.h>

void RegisterExit(Napi::Env env, Napi::Object exports);
