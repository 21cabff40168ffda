// A job on the thread pool that calls a JavaScript function back once it is done: what every addon
// here that works off the main thread needs around its own work. A job's struct starts with a
// `job` member; job_queue queues it (or, failing, throws and returns false: the caller frees it),
// and its complete callback calls job_done for the function to call (the work and reference
// released), then frees the job and calls that function.
#ifndef BLOBCHAIN_JOB_H
#define BLOBCHAIN_JOB_H
#include <stdbool.h>
#include <stdio.h>
#include <node_api.h>

typedef struct {
  napi_async_work work;
  napi_ref done_ref;
} job;

// `what`: the function queuing it, which names the work ("blobchain:<what>") and any failure
static inline bool job_queue(napi_env env, job* j, napi_value done, const char* what,
                             napi_async_execute_callback execute, napi_async_complete_callback complete, void* data) {
  char text[128];
  napi_value resource_name;
  snprintf(text, sizeof text, "blobchain:%s", what);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &resource_name);
  napi_create_reference(env, done, 1, &j->done_ref);
  bool made = napi_create_async_work(env, NULL, resource_name, execute, complete, data, &j->work) == napi_ok;
  if (made && napi_queue_async_work(env, j->work) == napi_ok) return true;
  if (made) napi_delete_async_work(env, j->work);
  napi_delete_reference(env, j->done_ref);
  snprintf(text, sizeof text, "%s: the job could not be queued", what);
  napi_throw_error(env, NULL, text);
  return false;
}

// the job's callback, its work and reference released
static inline napi_value job_done(napi_env env, job* j) {
  napi_value done;
  napi_get_reference_value(env, j->done_ref, &done);
  napi_delete_reference(env, j->done_ref);
  napi_delete_async_work(env, j->work);
  return done;
}

// call `done` with `argc` arguments, as a function called plainly
static inline void job_call(napi_env env, napi_value done, size_t argc, const napi_value* argv) {
  napi_value global, ignored;
  napi_get_global(env, &global);
  napi_call_function(env, global, done, argc, argv, &ignored);
}
#endif
