// Whether two files hold the same bytes because they share the same blocks on disk: a copy made
// by reflink (`cp --reflink`, the default of coreutils 9 on XFS, btrfs and bcachefs) shares every
// extent of its original, and is told the same without reading either.
//   sameExtents(pairs: string[], done: (same: Uint8Array, keys: BigInt64Array) => void): undefined
// pairs holds two paths per pair. On the thread pool, each path is opened (never following a
// symlink) and its extents asked for with FIEMAP (dirty pages written first, FIEMAP_FLAG_SYNC);
// same[i] is 1 when both are regular files of one device and size whose extent lists are one and
// the same: equal logical offsets, physical addresses and lengths, every one shared, the last one
// marked last, none of them compressed, inline, delayed, unwritten or of unknown place. Anything
// else is 0 (the caller reads the files). keys holds, for each pair, both files' (dev, ino, size,
// mtime ns, ctime ns) as fstat gave them after their extents were read: the caller trusts a 1
// only when those are the stat keys it expects (no write since).
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>
#include "job.h"

// extents asked for at once; a file with more is read instead
#define MAX_EXTENTS 128
#define KEY_FIELDS 5

typedef struct {
  job base;
  char** paths; // two per pair
  uint32_t pairs;
  uint8_t* same;
  int64_t* keys; // pairs * 2 * KEY_FIELDS
} Job;

typedef struct {
  struct fiemap map;
  struct fiemap_extent extents[MAX_EXTENTS];
} extent_map;

static const uint32_t refused = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED |
  FIEMAP_EXTENT_DATA_ENCRYPTED | FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_INLINE |
  FIEMAP_EXTENT_DATA_TAIL | FIEMAP_EXTENT_UNWRITTEN;

// the whole file's extents, every one shared and none refused; false when they cannot be told so
static bool extents_of(int fd, extent_map* m) {
  memset(m, 0, sizeof *m);
  m->map.fm_start = 0;
  m->map.fm_length = FIEMAP_MAX_OFFSET;
  m->map.fm_flags = FIEMAP_FLAG_SYNC;
  m->map.fm_extent_count = MAX_EXTENTS;
  if (ioctl(fd, FS_IOC_FIEMAP, &m->map) != 0) return false;
  uint32_t n = m->map.fm_mapped_extents;
  if (n == 0 || n > MAX_EXTENTS) return false;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t flags = m->extents[i].fe_flags;
    if ((flags & refused) != 0 || (flags & FIEMAP_EXTENT_SHARED) == 0) return false;
  }
  return (m->extents[n - 1].fe_flags & FIEMAP_EXTENT_LAST) != 0;
}

static void key_of(const struct stat* s, int64_t* out) {
  out[0] = (int64_t)s->st_dev;
  out[1] = (int64_t)s->st_ino;
  out[2] = (int64_t)s->st_size;
  out[3] = (int64_t)s->st_mtim.tv_sec * 1000000000 + s->st_mtim.tv_nsec;
  out[4] = (int64_t)s->st_ctim.tv_sec * 1000000000 + s->st_ctim.tv_nsec;
}

static bool same_pair(const char* a, const char* b, int64_t* keys) {
  static __thread extent_map maps[2];
  const char* paths[2] = { a, b };
  int fds[2] = { -1, -1 };
  struct stat stats[2];
  bool same = true;
  for (int k = 0; k < 2 && same; k++) {
    fds[k] = open(paths[k], O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    same = fds[k] >= 0 && extents_of(fds[k], &maps[k]) && fstat(fds[k], &stats[k]) == 0 && S_ISREG(stats[k].st_mode);
  }
  if (same) {
    key_of(&stats[0], keys);
    key_of(&stats[1], keys + KEY_FIELDS);
    uint32_t n = maps[0].map.fm_mapped_extents;
    same = stats[0].st_dev == stats[1].st_dev && stats[0].st_ino != stats[1].st_ino &&
      stats[0].st_size == stats[1].st_size && n == maps[1].map.fm_mapped_extents;
    for (uint32_t i = 0; i < n && same; i++) {
      const struct fiemap_extent* x = &maps[0].extents[i];
      const struct fiemap_extent* y = &maps[1].extents[i];
      same = x->fe_logical == y->fe_logical && x->fe_physical == y->fe_physical && x->fe_length == y->fe_length;
    }
  }
  for (int k = 0; k < 2; k++) if (fds[k] >= 0) close(fds[k]);
  return same;
}

static void execute(napi_env env, void* data) {
  (void)env;
  Job* job = data;
  for (uint32_t i = 0; i < job->pairs; i++) {
    job->same[i] = same_pair(job->paths[2 * i], job->paths[2 * i + 1], job->keys + (size_t)i * 2 * KEY_FIELDS) ? 1 : 0;
  }
}

static void release(Job* job) {
  job_free_strings(job->paths, 2 * job->pairs);
  free(job->same);
  free(job->keys);
  free(job);
}

static void complete(napi_env env, napi_status status, void* data) {
  (void)status;
  Job* job = data;
  napi_value done = job_done(env, &job->base);
  napi_value args[2], buffer;
  void* bytes = NULL;
  size_t keys = (size_t)job->pairs * 2 * KEY_FIELDS;
  napi_create_arraybuffer(env, job->pairs, &bytes, &buffer);
  if (job->pairs > 0) memcpy(bytes, job->same, job->pairs);
  napi_create_typedarray(env, napi_uint8_array, job->pairs, buffer, 0, &args[0]);
  napi_create_arraybuffer(env, keys * sizeof(int64_t), &bytes, &buffer);
  if (keys > 0) memcpy(bytes, job->keys, keys * sizeof(int64_t));
  napi_create_typedarray(env, napi_bigint64_array, keys, buffer, 0, &args[1]);
  release(job);
  job_call(env, done, 2, args);
}

static napi_value same_extents(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t length = 0;
  if (!job_paths_and_done(env, info, argv) || napi_get_array_length(env, argv[0], &length) != napi_ok || length % 2 != 0) {
    napi_throw_type_error(env, NULL, "sameExtents(pairs: string[] (two paths a pair), done: (same, keys) => void)");
    return NULL;
  }
  Job* job = calloc(1, sizeof(Job));
  uint32_t pairs = length / 2;
  if (job == NULL || (job->same = calloc(pairs + 1, 1)) == NULL ||
      (job->keys = calloc((size_t)pairs * 2 * KEY_FIELDS + 1, sizeof(int64_t))) == NULL) {
    if (job != NULL) free(job->same);
    free(job);
    napi_throw_error(env, NULL, "sameExtents: out of memory");
    return NULL;
  }
  uint32_t count = 0;
  if ((job->paths = job_strings(env, argv[0], &count, "sameExtents")) == NULL) {
    release(job);
    return NULL;
  }
  job->pairs = pairs;
  if (!job_queue(env, &job->base, argv[1], "sameExtents", execute, complete, job)) release(job);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "sameExtents", NAPI_AUTO_LENGTH, same_extents, NULL, &fn);
  napi_set_named_property(env, exports, "sameExtents", fn);
  return exports;
}
