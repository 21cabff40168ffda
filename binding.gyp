{
  "targets": [
    {
      "target_name": "xattr",
      "sources": ["native/xattr.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
