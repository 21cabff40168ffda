// The stat walk of a print (src/fs/fingerprint.ts) in one call: every entry of the tree at
// `dir`, depth first, each directory's names in byte order, as the print's line for the entry.
// Node's own walk costs a BigIntStats object per entry and a crossing per system call; this one
// makes the lines here, all in one buffer (a string per line was 40% of a walk's time, in making
// them and collecting them). walk(dir) → { bytes, ends, linked, xattrs }:
//   bytes:  Uint8Array, the lines one after another: each entry's (its relative path first; ""
//           is the root), with an empty attribute field;
//   ends:   Uint32Array, where each line ends in `bytes`;
//   linked: number[], the entries that are not directories and have more than one link;
//   xattrs: number[], the entries listing an attribute a layer carries (or too many names to
//           list here), in walk order: their attribute field is the caller's to fill.
//   newestCtime: bigint, the latest ctime of any entry, in nanoseconds.
// walk(dir, onChunk) → newestCtime: the same, handed to onChunk in stretches of about 1 MiB of
// lines, each with ends, linked and xattrs of its own (counted from its first line), its bytes a
// view of one buffer used again for the next (good until onChunk returns): for a caller that only
// hashes them, whose memory is then one stretch, not the whole tree's lines.
// walk(dir, onChunk, WALK_NO_XATTRS) lists no entry's attribute names (xattrs always empty): the
// same lines in about 30% less time (a system call fewer per entry), for a caller that hashes stats alone.
// Anything it cannot do the way the caller's own walk would (a failed system call, a name or a
// link's target that is not UTF-8, more than 4 GiB of lines) is thrown, and the caller walks
// again its own way, which fails or not as it does.
// mremap(2)
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <node_api.h>

typedef struct {
  char* data;
  size_t length;
  size_t capacity;
} text;

static int reserve(text* t, size_t more) {
  if (t->length + more + 1 <= t->capacity) return 0;
  size_t capacity = t->capacity == 0 ? 256 : t->capacity;
  while (capacity < t->length + more + 1) capacity *= 2;
  char* data = realloc(t->data, capacity);
  if (data == NULL) return -1;
  t->data = data;
  t->capacity = capacity;
  return 0;
}

static int append(text* t, const char* bytes, size_t n) {
  if (reserve(t, n) != 0) return -1;
  memcpy(t->data + t->length, bytes, n);
  t->length += n;
  t->data[t->length] = 0;
  return 0;
}

// Memory mapped for the walk's output, grown by remapping: not malloc's, whose threshold for
// mapping a block rises to the size of the largest one freed (a print's lines: tens of MB), so
// that after one walk the process's other big buffers (tar and deflate's) stayed in its heap.
typedef struct {
  char* data;
  size_t length;
  size_t capacity;
} mapped;

static int mapped_append(mapped* m, const void* bytes, size_t n) {
  if (m->length + n > m->capacity) {
    size_t capacity = m->capacity == 0 ? (size_t)1 << 20 : m->capacity;
    while (capacity < m->length + n) capacity *= 2;
    void* data = m->data == NULL
      ? mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
      : mremap(m->data, m->capacity, capacity, MREMAP_MAYMOVE);
    if (data == MAP_FAILED) return -1;
    m->data = data;
    m->capacity = capacity;
  }
  memcpy(m->data + m->length, bytes, n);
  m->length += n;
  return 0;
}

static void mapped_free(mapped* m) {
  if (m->data != NULL) munmap(m->data, m->capacity);
  m->data = NULL;
}

// a signed 128-bit number in decimal: nanosecond times pass 2^63 for far dates, as BigInt does
static int append_int128(text* t, __int128 value) {
  char digits[48];
  int at = sizeof digits;
  int negative = value < 0;
  unsigned __int128 magnitude = negative ? -(unsigned __int128)value : (unsigned __int128)value;
  // 128-bit division is a library call per digit: the digits past 64 bits alone take it
  while (magnitude > UINT64_MAX) {
    digits[--at] = (char)('0' + (int)(magnitude % 10));
    magnitude /= 10;
  }
  uint64_t low = (uint64_t)magnitude;
  do {
    digits[--at] = (char)('0' + (int)(low % 10));
    low /= 10;
  } while (low != 0);
  if (negative) digits[--at] = '-';
  return append(t, digits + at, sizeof digits - at);
}

static int append_field(text* t, __int128 value) {
  if (append_int128(t, value) != 0) return -1;
  return append(t, "\0", 1);
}

// RFC 3629 UTF-8, as a fatal TextDecoder accepts it: no overlong forms, no surrogates, ≤ U+10FFFF;
// the first `length` bytes of `s`
static int valid_utf8_n(const unsigned char* s, size_t length) {
  const unsigned char* end = s + length;
  while (s < end) {
    unsigned char c = *s;
    if (c < 0x80) { s++; continue; }
    int n;
    unsigned int min, point;
    if ((c & 0xe0) == 0xc0) { n = 1; min = 0x80; point = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { n = 2; min = 0x800; point = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { n = 3; min = 0x10000; point = c & 0x07; }
    else return 0;
    if (end - s <= n) return 0;
    for (int i = 1; i <= n; i++) {
      if ((s[i] & 0xc0) != 0x80) return 0;
      point = (point << 6) | (s[i] & 0x3f);
    }
    if (point < min || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) return 0;
    s += n + 1;
  }
  return 1;
}

static int valid_utf8(const unsigned char* s) {
  return valid_utf8_n(s, strlen((const char*)s));
}

// the attribute names a layer carries (src/internal/xattr.ts, isCarried)
static int carried(const char* name) {
  return strncmp(name, "trusted.overlay.", 16) != 0 && strncmp(name, "user.overlay.", 13) != 0 &&
    strcmp(name, "security.selinux") != 0 && strncmp(name, "system.", 7) != 0;
}

// hard-link groups: (dev, ino) → the relative path first seen, open addressing
typedef struct {
  dev_t dev;
  ino_t ino;
  char* first;
} inode;

typedef struct {
  inode* slots;
  size_t capacity;
  size_t used;
} inodes;

static size_t slot_of(const inodes* m, dev_t dev, ino_t ino) {
  uint64_t h = ((uint64_t)ino * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)dev * 0xc2b2ae3d27d4eb4fULL);
  return (size_t)(h ^ (h >> 29)) & (m->capacity - 1);
}

static int grow(inodes* m) {
  size_t capacity = m->capacity == 0 ? 64 : m->capacity * 2;
  inode* slots = calloc(capacity, sizeof(inode));
  if (slots == NULL) return -1;
  inodes next = { slots, capacity, m->used };
  for (size_t i = 0; i < m->capacity; i++) {
    if (m->slots[i].first == NULL) continue;
    size_t at = slot_of(&next, m->slots[i].dev, m->slots[i].ino);
    while (slots[at].first != NULL) at = (at + 1) & (capacity - 1);
    slots[at] = m->slots[i];
  }
  free(m->slots);
  *m = next;
  return 0;
}

// the first name of the group of (dev, ino), or NULL after recording `relative` as its first
static const char* first_name(inodes* m, dev_t dev, ino_t ino, const char* relative, int* failed) {
  if ((m->used + 1) * 2 > m->capacity && grow(m) != 0) { *failed = 1; return NULL; }
  size_t at = slot_of(m, dev, ino);
  while (m->slots[at].first != NULL) {
    if (m->slots[at].dev == dev && m->slots[at].ino == ino) return m->slots[at].first;
    at = (at + 1) & (m->capacity - 1);
  }
  char* copy = strdup(relative);
  if (copy == NULL) { *failed = 1; return NULL; }
  m->slots[at] = (inode){ dev, ino, copy };
  m->used++;
  return NULL;
}

typedef struct {
  napi_env env;
  napi_value linked, xattrs;
  napi_value on_chunk; // NULL: every line in `all`, handed over at the end
  uint32_t count, linked_count, xattrs_count;
  uint32_t first;     // the first entry of the stretch in `all`
  napi_ref scratch;   // the ArrayBuffer every stretch's bytes are handed over in
  size_t scratch_size;
  mapped all;  // every line so far
  mapped ends; // where each ends in `all`, uint32_t each
  text path;      // the entry's path; its relative part starts at `root` (past the slash)
  size_t root;
  text line;
  inodes groups;
  int no_xattrs;       // attribute names not listed
  __int128 newest_ctime; // ns
  const char* failed; // the system call that failed (errno set), or a reason
  int code;
} walker;

static int fail(walker* w, const char* what) {
  w->failed = what;
  w->code = errno;
  return -1;
}

static int push_index(walker* w, napi_value array, uint32_t* count) {
  napi_value index;
  if (napi_create_uint32(w->env, w->count - w->first, &index) != napi_ok) return fail(w, "napi");
  if (napi_set_element(w->env, array, (*count)++, index) != napi_ok) return fail(w, "napi");
  return 0;
}

static int by_bytes(const void* a, const void* b) {
  return strcmp(*(char* const*)a, *(char* const*)b);
}

static int visit(walker* w, int parent, const char* name);

// the lines a stretch holds before it is handed over
#define STRETCH ((size_t)1 << 20)

// the ArrayBuffer of at least `size` bytes the stretches are handed over in, and its bytes: one
// for the whole walk (a fresh copy per stretch stayed garbage until a collection, which an idle
// young generation puts off: the whole tree's lines again, by the walk's end)
static int scratch_of(walker* w, size_t size, napi_value* buffer, void** data) {
  napi_env env = w->env;
  if (w->scratch != NULL && w->scratch_size >= size) {
    if (napi_get_reference_value(env, w->scratch, buffer) != napi_ok ||
        napi_get_arraybuffer_info(env, *buffer, data, NULL) != napi_ok) return fail(w, "napi");
    return 0;
  }
  size_t capacity = size > 2 * STRETCH ? size : 2 * STRETCH;
  if (napi_create_arraybuffer(env, capacity, data, buffer) != napi_ok) return fail(w, "napi");
  if (w->scratch != NULL) napi_delete_reference(env, w->scratch);
  w->scratch = NULL;
  if (napi_create_reference(env, *buffer, 1, &w->scratch) != napi_ok) return fail(w, "napi");
  w->scratch_size = capacity;
  return 0;
}

// the stretch so far to w->on_chunk in a handle scope of its own: its bytes in the walk's one
// scratch buffer (the callback's view of them good until it returns), its ends and indexes fresh;
// `all` and `ends` are then emptied and used again, and the next stretch's index arrays made
static int hand_over(walker* w) {
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return fail(w, "napi");
  napi_value scratch, bytes, ends_buffer, ends, chunk, global, ignored;
  void* data = NULL;
  void* into = NULL;
  uint32_t lines = w->count - w->first;
  int result = 0;
  if (scratch_of(w, w->all.length, &scratch, &into) != 0) result = -1;
  else {
    if (w->all.length > 0) memcpy(into, w->all.data, w->all.length);
    if (napi_create_typedarray(env, napi_uint8_array, w->all.length, scratch, 0, &bytes) != napi_ok ||
        napi_create_arraybuffer(env, (size_t)lines * sizeof(uint32_t), &data, &ends_buffer) != napi_ok ||
        napi_create_typedarray(env, napi_uint32_array, lines, ends_buffer, 0, &ends) != napi_ok ||
        napi_create_object(env, &chunk) != napi_ok) result = fail(w, "napi");
  }
  if (result == 0) {
    if (lines > 0) memcpy(data, w->ends.data, (size_t)lines * sizeof(uint32_t));
    napi_set_named_property(env, chunk, "bytes", bytes);
    napi_set_named_property(env, chunk, "ends", ends);
    napi_set_named_property(env, chunk, "linked", w->linked);
    napi_set_named_property(env, chunk, "xattrs", w->xattrs);
    napi_get_global(env, &global);
    // a callback that throws leaves its exception pending: the walk stops and walk() rethrows it
    if (napi_call_function(env, global, w->on_chunk, 1, &chunk, &ignored) != napi_ok) {
      w->failed = "the chunk callback threw";
      w->code = 0;
      result = -1;
    }
  }
  napi_close_handle_scope(env, scope);
  if (result != 0) return -1;
  w->all.length = 0;
  w->ends.length = 0;
  w->first = w->count;
  w->linked_count = 0;
  w->xattrs_count = 0;
  if (napi_create_array(env, &w->linked) != napi_ok || napi_create_array(env, &w->xattrs) != napi_ok) return fail(w, "napi");
  return 0;
}

// a record of getdents64(2): glibc's struct dirent64 where it has one, the kernel's layout always
struct entry64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

// the names of the directory open as `fd` (left open), sorted by bytes; NULL with w->failed set
// on failure. Read with getdents64 on `fd` itself: opendir's stream costs a dup, two fcntl, an
// fstat and a close more per directory, a fifth of a walk's system calls
static char** names_of(walker* w, int fd, size_t* count) {
  static __thread char records[32768] __attribute__((aligned(8)));
  size_t n = 0, capacity = 16;
  char** names = malloc(capacity * sizeof(char*));
  if (names == NULL) { fail(w, "malloc"); return NULL; }
  for (;;) {
    long got = syscall(SYS_getdents64, fd, records, sizeof records);
    if (got < 0) { fail(w, "readdir"); goto failed; }
    if (got == 0) break;
    for (long at = 0; at < got;) {
      const struct entry64* entry = (const struct entry64*)(records + at);
      at += entry->d_reclen;
      const char* name = entry->d_name;
      if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
      if (!valid_utf8((const unsigned char*)name)) { w->failed = "a name is not UTF-8"; w->code = 0; goto failed; }
      if (n == capacity) {
        capacity *= 2;
        char** more = realloc(names, capacity * sizeof(char*));
        if (more == NULL) { fail(w, "malloc"); goto failed; }
        names = more;
      }
      if ((names[n] = strdup(name)) == NULL) { fail(w, "malloc"); goto failed; }
      n++;
    }
  }
  qsort(names, n, sizeof(char*), by_bytes);
  *count = n;
  return names;
failed:
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return NULL;
}

// listxattrat(2) (Linux 6.13): an entry's attribute names relative to its directory's descriptor,
// where llistxattr resolves the whole path again, component by component (about a sixth of a
// walk's time on a deep tree). Its number is the same on every architecture of the unified table;
// where the kernel lacks it (ENOSYS) or a filter refuses it (EPERM where llistxattr is allowed),
// it is not tried again.
#if defined(SYS_listxattrat)
#define LISTXATTRAT SYS_listxattrat
#elif defined(__x86_64__) || defined(__aarch64__)
#define LISTXATTRAT 465
#endif
// process-wide: whether the kernel answers listxattrat; a stale 1 costs one more refused call
static volatile int listxattrat_works = 1;

static ssize_t list_names(int parent, const char* name, const char* path, char* names, size_t size) {
#ifdef LISTXATTRAT
  if (listxattrat_works) {
    ssize_t listed = syscall(LISTXATTRAT, parent, name, AT_SYMLINK_NOFOLLOW, names, size);
    if (listed >= 0 || (errno != ENOSYS && errno != EPERM)) return listed;
    int refused = errno;
    ssize_t again = llistxattr(path, names, size);
    // llistxattr answers, or fails another way: the kernel lacks listxattrat or a filter refuses it
    if (refused == ENOSYS || again >= 0 || errno != EPERM) listxattrat_works = 0;
    return again;
  }
#endif
  return llistxattr(path, names, size);
}

// The entry `name` of the directory open as `parent` (AT_FDCWD and the whole path for the root),
// whose whole path is w->path: system calls relative to the parent's descriptor, where the kernel
// resolves one name instead of the whole path.
static int visit(walker* w, int parent, const char* name) {
  struct stat s;
  const char* path = w->path.data;
  if (fstatat(parent, name, &s, AT_SYMLINK_NOFOLLOW) != 0) return fail(w, "lstat");
  const char* relative = w->path.length > w->root ? path + w->root : "";
  char type = S_ISREG(s.st_mode) ? 'f' : S_ISDIR(s.st_mode) ? 'd' : S_ISLNK(s.st_mode) ? 'l'
    : S_ISFIFO(s.st_mode) ? 'p' : S_ISCHR(s.st_mode) ? 'c' : S_ISBLK(s.st_mode) ? 'b' : 's';

  text* line = &w->line;
  line->length = 0;
  if (append(line, relative, strlen(relative)) != 0 || append(line, "\0", 1) != 0) return fail(w, "malloc");
  char kind[2] = { type, 0 };
  if (append(line, kind, 2) != 0 ||
      append_field(line, (int64_t)s.st_mode) != 0 || append_field(line, (int64_t)s.st_uid) != 0 ||
      append_field(line, (int64_t)s.st_gid) != 0 || append_field(line, type == 'd' ? 0 : (int64_t)s.st_size) != 0 ||
      append_field(line, (__int128)(int64_t)s.st_mtim.tv_sec * 1000000000 + (int64_t)s.st_mtim.tv_nsec) != 0 ||
      append_field(line, (int64_t)s.st_rdev) != 0) return fail(w, "malloc");

  size_t extra = line->length;
  if (type == 'l') {
    size_t size = s.st_size > 0 ? (size_t)s.st_size + 1 : 256;
    for (;;) {
      if (reserve(line, size) != 0) return fail(w, "malloc");
      ssize_t n = readlinkat(parent, name, line->data + line->length, size);
      if (n < 0) return fail(w, "readlink");
      if ((size_t)n < size) { line->length += n; break; }
      size *= 2;
    }
    // as bytes: Node's own walk reads a target as UTF-8, mending what is not
    if (!valid_utf8_n((const unsigned char*)line->data + extra, line->length - extra)) {
      w->failed = "a link's target is not UTF-8";
      w->code = 0;
      return -1;
    }
  }
  if (type != 'd' && s.st_nlink > 1) {
    if (push_index(w, w->linked, &w->linked_count) != 0) return -1;
    int failed = 0;
    const char* first = first_name(&w->groups, s.st_dev, s.st_ino, relative, &failed);
    if (failed) return fail(w, "malloc");
    line->length = extra; // a linked entry's extra field is its group's first name, a link's target too
    if (first != NULL && append(line, first, strlen(first)) != 0) return fail(w, "malloc");
  }
  if (append(line, "\0\0", 2) != 0) return fail(w, "malloc");

  char names[4096];
  ssize_t listed = w->no_xattrs ? 0 : list_names(parent, name, path, names, sizeof names);
  int attributes = 0;
  if (listed < 0) {
    if (errno == ERANGE) attributes = 1; // many names: the caller lists them
    else if (errno != ENOTSUP && errno != ENODATA) return fail(w, "llistxattr");
  }
  for (ssize_t at = 0; at < listed && !attributes; at += strlen(names + at) + 1) attributes = carried(names + at);
  if (attributes && push_index(w, w->xattrs, &w->xattrs_count) != 0) return -1;

  __int128 ctime = (__int128)(int64_t)s.st_ctim.tv_sec * 1000000000 + (int64_t)s.st_ctim.tv_nsec;
  if (ctime > w->newest_ctime) w->newest_ctime = ctime;
  if (append_int128(line, (int64_t)s.st_dev) != 0 || append(line, ":", 1) != 0 ||
      append_int128(line, (int64_t)s.st_ino) != 0 || append(line, ":", 1) != 0 ||
      append_int128(line, ctime) != 0 ||
      append(line, "\n", 1) != 0) return fail(w, "malloc");

  if (w->all.length + line->length > UINT32_MAX) { w->failed = "more than 4 GiB of lines"; w->code = 0; return -1; }
  if (mapped_append(&w->all, line->data, line->length) != 0) return fail(w, "mmap");
  uint32_t end = (uint32_t)w->all.length;
  if (mapped_append(&w->ends, &end, sizeof end) != 0) return fail(w, "mmap");
  w->count++;
  if (w->on_chunk != NULL && w->all.length >= STRETCH && hand_over(w) != 0) return -1;

  if (type != 'd') return 0;
  // the root as opendir would open it; below it, a name that is no longer a directory fails
  int dir = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (parent == AT_FDCWD ? 0 : O_NOFOLLOW));
  if (dir < 0) return fail(w, "opendir");
  size_t count = 0;
  char** children = names_of(w, dir, &count);
  if (children == NULL) { close(dir); return -1; }
  size_t length = w->path.length;
  int result = 0;
  for (size_t i = 0; i < count && result == 0; i++) {
    w->path.length = length;
    if ((length == 0 || w->path.data[length - 1] != '/') && append(&w->path, "/", 1) != 0) result = fail(w, "malloc");
    else if (append(&w->path, children[i], strlen(children[i])) != 0) result = fail(w, "malloc");
    else result = visit(w, dir, children[i]);
  }
  close(dir);
  w->path.length = length;
  w->path.data[length] = 0;
  for (size_t i = 0; i < count; i++) free(children[i]);
  free(children);
  return result;
}

static void unmap(napi_env env, void* data, void* hint) {
  (void)env;
  munmap(data, (size_t)hint);
}

// an ArrayBuffer over `m`'s bytes, which it owns from now on (m is empty after); a copy where
// the runtime allows no external buffers
static int external(napi_env env, mapped* m, napi_value* buffer) {
  if (m->length > 0 &&
      napi_create_external_arraybuffer(env, m->data, m->length, unmap, (void*)m->capacity, buffer) == napi_ok) {
    m->data = NULL;
    return 0;
  }
  void* copy;
  if (napi_create_arraybuffer(env, m->length, &copy, buffer) != napi_ok) return -1;
  if (m->length > 0) memcpy(copy, m->data, m->length);
  return 0;
}

#define WALK_NO_XATTRS 1

static napi_value walk(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  size_t length = 0;
  napi_valuetype callback = napi_undefined;
  napi_valuetype flags_type = napi_undefined;
  uint32_t flags = 0;
  if (argc >= 2) napi_typeof(env, argv[1], &callback);
  if (argc >= 3) napi_typeof(env, argv[2], &flags_type);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], NULL, 0, &length) != napi_ok || length == 0 ||
      (callback != napi_undefined && callback != napi_function) ||
      (flags_type != napi_undefined && (flags_type != napi_number || napi_get_value_uint32(env, argv[2], &flags) != napi_ok ||
        (flags & ~(uint32_t)WALK_NO_XATTRS) != 0 || callback != napi_function))) {
    napi_throw_type_error(env, NULL, "walk(dir: string, onChunk?: (chunk) => void, flags?: 0 | 1, with onChunk)");
    return NULL;
  }
  walker w;
  memset(&w, 0, sizeof w);
  w.env = env;
  w.no_xattrs = (flags & WALK_NO_XATTRS) != 0;
  w.newest_ctime = INT64_MIN;
  w.on_chunk = callback == napi_function ? argv[1] : NULL;
  if (reserve(&w.path, length + 1) != 0) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  napi_get_value_string_utf8(env, argv[0], w.path.data, length + 1, &length);
  w.path.length = length;
  // relative paths start past the root and its slash
  w.root = length + (w.path.data[length - 1] == '/' ? 0 : 1);
  napi_create_array(env, &w.linked);
  napi_create_array(env, &w.xattrs);
  int result = visit(&w, AT_FDCWD, w.path.data);
  // the last stretch, even an empty one: the caller hears of every walk at least once
  if (result == 0 && w.on_chunk != NULL) result = hand_over(&w);
  char where[4096];
  snprintf(where, sizeof where, "%s", w.path.data);
  free(w.path.data);
  free(w.line.data);
  for (size_t i = 0; i < w.groups.capacity; i++) free(w.groups.slots[i].first);
  free(w.groups.slots);
  if (w.scratch != NULL) napi_delete_reference(env, w.scratch);
  napi_value out = NULL;
  napi_value newest = NULL;
  // past 64 bits (a clock set centuries ahead) it is told as the latest there is: never settled
  int64_t newest_ns = w.newest_ctime > INT64_MAX ? INT64_MAX : (int64_t)w.newest_ctime;
  if (result == 0 && napi_create_bigint_int64(env, newest_ns, &newest) != napi_ok) result = fail(&w, "napi");
  if (result == 0 && w.on_chunk != NULL) out = newest;
  else if (result == 0) {
    // handed over as they are, not copied: freed when the arrays are collected
    napi_value bytes_buffer, bytes, ends_buffer, ends;
    size_t length = w.all.length;
    if (external(env, &w.all, &bytes_buffer) != 0 || external(env, &w.ends, &ends_buffer) != 0) result = fail(&w, "napi");
    else {
      napi_create_typedarray(env, napi_uint8_array, length, bytes_buffer, 0, &bytes);
      napi_create_typedarray(env, napi_uint32_array, w.count, ends_buffer, 0, &ends);
      napi_create_object(env, &out);
      napi_set_named_property(env, out, "bytes", bytes);
      napi_set_named_property(env, out, "ends", ends);
      napi_set_named_property(env, out, "linked", w.linked);
      napi_set_named_property(env, out, "xattrs", w.xattrs);
      napi_set_named_property(env, out, "newestCtime", newest);
    }
  }
  mapped_free(&w.all);
  mapped_free(&w.ends);
  bool pending = false;
  if (result != 0 && napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  if (result != 0) {
    char message[4352];
    if (w.code != 0) snprintf(message, sizeof message, "%s: %s, %s", where, w.failed, strerror(w.code));
    else snprintf(message, sizeof message, "%s: %s", where, w.failed);
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  return out;
}

// list(dir) → { names, stats }: the entries of one directory (not "." and ".."), in readdir's
// order, and their lstat as 13 BigInt64 fields each (dev, ino, mode, nlink, uid, gid, rdev, size,
// blksize, blocks, atime, mtime and ctime in nanoseconds): the differ's listing of a directory in
// one call instead of a crossing and a BigIntStats object per entry. Throws as walk does.
#define LIST_FIELDS 13
static napi_value list(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char dir[4096];
  size_t length = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], dir, sizeof dir, &length) != napi_ok || length == 0 ||
      length >= sizeof dir - 1) {
    napi_throw_type_error(env, NULL, "list(dir: string), a path shorter than 4095 bytes");
    return NULL;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* stream = fd < 0 ? NULL : fdopendir(fd);
  if (stream == NULL) {
    char message[4352];
    snprintf(message, sizeof message, "%s: opendir, %s", dir, strerror(errno));
    if (fd >= 0) close(fd);
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  size_t n = 0, capacity = 64;
  int64_t* fields = malloc(capacity * LIST_FIELDS * sizeof(int64_t));
  napi_value names;
  napi_create_array(env, &names);
  const char* failed = fields == NULL ? "malloc" : NULL;
  int code = 0;
  const char* where = "";
  while (failed == NULL) {
    errno = 0;
    struct dirent* entry = readdir(stream);
    if (entry == NULL) {
      if (errno != 0) { failed = "readdir"; code = errno; }
      break;
    }
    const char* name = entry->d_name;
    if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
    if (!valid_utf8((const unsigned char*)name)) { failed = "a name is not UTF-8"; where = name; break; }
    struct stat st;
    if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) { failed = "lstat"; code = errno; where = name; break; }
    if (n == capacity) {
      capacity *= 2;
      int64_t* more = realloc(fields, capacity * LIST_FIELDS * sizeof(int64_t));
      if (more == NULL) { failed = "malloc"; break; }
      fields = more;
    }
    int64_t* f = fields + n * LIST_FIELDS;
    f[0] = (int64_t)st.st_dev; f[1] = (int64_t)st.st_ino; f[2] = (int64_t)st.st_mode; f[3] = (int64_t)st.st_nlink;
    f[4] = (int64_t)st.st_uid; f[5] = (int64_t)st.st_gid; f[6] = (int64_t)st.st_rdev; f[7] = (int64_t)st.st_size;
    f[8] = (int64_t)st.st_blksize; f[9] = (int64_t)st.st_blocks;
    f[10] = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
    f[11] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    f[12] = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    napi_value js_name;
    if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &js_name) != napi_ok ||
        napi_set_element(env, names, (uint32_t)n, js_name) != napi_ok) { failed = "napi"; break; }
    n++;
  }
  closedir(stream);
  if (failed != NULL) {
    free(fields);
    char message[8704];
    if (code != 0) snprintf(message, sizeof message, "%s%s%s: %s, %s", dir, *where ? "/" : "", where, failed, strerror(code));
    else snprintf(message, sizeof message, "%s%s%s: %s", dir, *where ? "/" : "", where, failed);
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  void* data = NULL;
  napi_value buffer, stats, out;
  if (napi_create_arraybuffer(env, n * LIST_FIELDS * sizeof(int64_t), &data, &buffer) != napi_ok) {
    free(fields);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  if (n > 0) memcpy(data, fields, n * LIST_FIELDS * sizeof(int64_t));
  free(fields);
  napi_create_typedarray(env, napi_bigint64_array, n * LIST_FIELDS, buffer, 0, &stats);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "names", names);
  napi_set_named_property(env, out, "stats", stats);
  return out;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "walk", NAPI_AUTO_LENGTH, walk, NULL, &fn);
  napi_set_named_property(env, exports, "walk", fn);
  napi_create_function(env, "list", NAPI_AUTO_LENGTH, list, NULL, &fn);
  napi_set_named_property(env, exports, "list", fn);
  return exports;
}
