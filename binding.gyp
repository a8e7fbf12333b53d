{
  "targets": [
    {
      "target_name": "flexinfer",
      # Every native/src/*.cc is part of the addon; each file registers its own exports
      # (see native/src/registry.h), so adding a module never edits a shared list.
      "sources": [
        "<!@(node -e \"const fs=require('fs');console.log(fs.readdirSync('native/src').filter(f=>f.endsWith('.cc')).sort().map(f=>'native/src/'+f).join(' '))\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/src"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS"
      ],
      "cflags!": ["-fno-exceptions", "-O2", "-O1"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-O2", "-O1", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": [
        "-std=c++17",
        "-O3",
        "-fexceptions",
        "-Wall",
        "-Wno-unused-function",
        "-Wno-unknown-pragmas",
        "-fno-strict-aliasing",
        "<!@(node -p \"process.env.FLEXINFER_PORTABLE ? '' : '-march=native'\")"
      ],
      "libraries": ["-lpthread"],
      "conditions": [
        ["OS=='linux'", { "defines": ["_GNU_SOURCE"] }]
      ]
    }
  ]
}
