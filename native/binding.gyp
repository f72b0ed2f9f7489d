{
  "targets": [
    {
      "target_name": "starling_native",
      "sources": ["addon.cc", "gzip_index.cc", "sha256.cc", "exit.cc", "mount.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "libraries": ["-lz"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2"]
    },
    {
      "target_name": "starling-mount",
      "type": "executable",
      "sources": ["mount_client.c"],
      "cflags": ["-std=c11", "-O2", "-Wall", "-Wextra"]
    }
  ]
}
