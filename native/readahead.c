// Reading a tree's files cold is a wait per file: its inode, then its first blocks, one request at
// a time from a thread that then hashes them. Asking the kernel for the next files' bytes ahead
// (posix_fadvise WILLNEED starts their reads and returns) keeps several requests in flight while
// the thread hashes the file before them.
//   willNeed(paths: string[], done: () => void): undefined
// opens each path (never following a symlink), advises WILLNEED on the whole file and closes it,
// on the thread pool (an open may wait for its inode to be read), then calls done(). A path that
// cannot be opened is passed over: this is advice, the read that follows says what is wrong.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>
#include "job.h"

typedef struct {
  job base;
  char** paths;
  uint32_t count;
} Job;

static void execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  for (uint32_t i = 0; i < job->count; i++) {
    int fd = open(job->paths[i], O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
    close(fd);
  }
}

static void release(Job* job) {
  job_free_strings(job->paths, job->count);
  free(job);
}

static void complete(napi_env env, napi_status status, void* data) {
  (void)status;
  Job* job = data;
  napi_value done = job_done(env, &job->base);
  release(job);
  job_call(env, done, 0, NULL);
}

static napi_value will_need(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!job_paths_and_done(env, info, argv)) {
    napi_throw_type_error(env, NULL, "willNeed(paths: string[], done: () => void)");
    return NULL;
  }
  Job* job = calloc(1, sizeof(Job));
  if (job == NULL) {
    napi_throw_error(env, NULL, "willNeed: out of memory");
    return NULL;
  }
  if ((job->paths = job_strings(env, argv[0], &job->count, "willNeed")) == NULL) {
    free(job);
    return NULL;
  }
  if (!job_queue(env, &job->base, argv[1], "willNeed", execute, complete, job)) release(job);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "willNeed", NAPI_AUTO_LENGTH, will_need, NULL, &fn);
  napi_set_named_property(env, exports, "willNeed", fn);
  return exports;
}
