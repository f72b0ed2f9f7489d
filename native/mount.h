// mount and unmount of native/mount.cc, registered on the addon's exports.
#pragma once
#include <napi.h>

void RegisterMount(Napi::Env env, Napi::Object exports);
