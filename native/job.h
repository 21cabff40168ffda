// A job on the thread pool that calls a JavaScript function back once it is done: what every addon
// here that works off the main thread needs around its own work. A job's struct starts with a
// `job` member; job_queue queues it (or, failing, throws and returns false: the caller frees it),
// and its complete callback calls job_done for the function to call (the work and reference
// released), then frees the job and calls that function.
#ifndef BLOBCHAIN_JOB_H
#define BLOBCHAIN_JOB_H
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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
// the arguments of a job over a list of paths, (paths: string[], done: function): true with
// argv[0] the array and argv[1] the function, else false (the caller throws its usage)
static inline bool job_paths_and_done(napi_env env, napi_callback_info info, napi_value argv[2]) {
  size_t argc = 2;
  napi_valuetype kind;
  bool is_array = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  return argc >= 2 && napi_is_array(env, argv[0], &is_array) == napi_ok && is_array &&
    napi_typeof(env, argv[1], &kind) == napi_ok && kind == napi_function;
}

// the strings of the JavaScript array `array` copied for a job (`*count` of them; free them with
// job_free_strings), or NULL having thrown a TypeError "<what>: every path must be a string" (or
// an error when out of memory)
static inline char** job_strings(napi_env env, napi_value array, uint32_t* count, const char* what) {
  char text[128];
  uint32_t length = 0;
  napi_get_array_length(env, array, &length);
  char** strings = calloc((size_t)length + 1, sizeof(char*));
  if (strings == NULL) {
    snprintf(text, sizeof text, "%s: out of memory", what);
    napi_throw_error(env, NULL, text);
    return NULL;
  }
  for (uint32_t i = 0; i < length; i++) {
    napi_value item;
    size_t size = 0;
    if (napi_get_element(env, array, i, &item) != napi_ok ||
        napi_get_value_string_utf8(env, item, NULL, 0, &size) != napi_ok || (strings[i] = malloc(size + 1)) == NULL) {
      for (uint32_t j = 0; j < i; j++) free(strings[j]);
      free(strings);
      snprintf(text, sizeof text, "%s: every path must be a string", what);
      napi_throw_type_error(env, NULL, text);
      return NULL;
    }
    napi_get_value_string_utf8(env, item, strings[i], size + 1, &size);
  }
  *count = length;
  return strings;
}

static inline void job_free_strings(char** strings, uint32_t count) {
  if (strings == NULL) return;
  for (uint32_t i = 0; i < count; i++) free(strings[i]);
  free(strings);
}
#endif
