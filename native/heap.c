// The C heap's arenas, bounded at run time (glibc's MALLOC_ARENA_MAX is read only when a process
// starts, before any of its code runs).
//
// limitArenas(n) → true where glibc applied it, false where the C library has no mallopt (musl)
// or refused it. glibc gives a thread that finds the arenas busy an arena of its own, up to eight
// per core, and each keeps the memory its thread freed: a build's threads (deflate on the thread
// pool, hashing, prints) each held tens of MiB that way. The bound applies to arenas made from
// now on; threads beyond it share the existing ones.
#define _GNU_SOURCE
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static napi_value limit_arenas(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype type = napi_undefined;
  int64_t arenas = 0;
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  if (type != napi_number || napi_get_value_int64(env, argv[0], &arenas) != napi_ok || arenas < 1 || arenas > INT32_MAX) {
    napi_throw_type_error(env, NULL, "limitArenas(count): a positive 32-bit integer");
    return NULL;
  }
  bool applied = false;
#ifdef __GLIBC__
  // mallopt returns 1 on success, 0 on error
  applied = mallopt(M_ARENA_MAX, (int)arenas) == 1;
#endif
  napi_value result;
  napi_get_boolean(env, applied, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "limitArenas", NAPI_AUTO_LENGTH, limit_arenas, NULL, &fn);
  napi_set_named_property(env, exports, "limitArenas", fn);
  return exports;
}
