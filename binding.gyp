{
  "targets": [
    {
      "target_name": "xattr",
      "sources": ["native/xattr.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "walk",
      "sources": ["native/walk.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "memory",
      "sources": ["native/memory.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "readahead",
      "sources": ["native/readahead.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "extents",
      "sources": ["native/extents.c"],
      "cflags": ["-O2", "-Wall"]
    },
    {
      "target_name": "guard",
      "type": "executable",
      "sources": ["native/guard.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
