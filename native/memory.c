// glibc's malloc keeps what is freed in its arenas, and a long build frees much in pieces of all
// sizes (buffers, zlib's state, V8's own): the free pages between live blocks stay resident.
// malloc_trim(0) gives every arena's whole free pages back to the system (MADV_DONTNEED).
//   trim(done): undefined
// runs it on the thread pool (it takes each arena's lock in turn, for milliseconds to tens of
// them, which the main thread should not wait for), then calls done(released: boolean). Where
// malloc is not glibc's, there is nothing to call: done(false).
#include <stdbool.h>
#include <stdlib.h>
#include <node_api.h>
#include "job.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif

typedef struct {
  job base;
  bool released;
} Job;

static void execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
#ifdef __GLIBC__
  job->released = malloc_trim(0) == 1;
#else
  job->released = false;
#endif
}

static void complete(napi_env env, napi_status status, void* data) {
  (void)status;
  Job* job = data;
  napi_value done = job_done(env, &job->base), argv[1];
  napi_get_boolean(env, job->released, &argv[0]);
  free(job);
  job_call(env, done, 1, argv);
}

static napi_value trim(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype kind;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_typeof(env, argv[0], &kind) != napi_ok || kind != napi_function) {
    napi_throw_type_error(env, NULL, "trim(done: (released: boolean) => void)");
    return NULL;
  }
  Job* job = calloc(1, sizeof(Job));
  if (job == NULL) { napi_throw_error(env, NULL, "trim: out of memory"); return NULL; }
  if (!job_queue(env, &job->base, argv[0], "trim", execute, complete, job)) free(job);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn);
  napi_set_named_property(env, exports, "trim", fn);
  return exports;
}
