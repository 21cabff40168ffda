// Extended attributes of one path, never following a symbolic link: Node has no API for them.
// list(path) → [[name, Buffer], ...] in the order the kernel gives; an attribute this process may
// not read comes as [name, "EACCES" or "EPERM"]; any other failure is thrown as an error with
// `code`, `syscall` and `path` (ENOTSUP is no attributes, not an error). set(path, name, Buffer)
// sets one.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, int code, const char* syscall, const char* path) {
  napi_value message, error, value;
  char text[512];
  snprintf(text, sizeof text, "%s, %s '%s'", strerror(code), syscall, path);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, NULL, message, &error);
  const char* name = code == ENOENT ? "ENOENT" : code == EACCES ? "EACCES" : code == EPERM ? "EPERM"
    : code == ENOTSUP ? "ENOTSUP" : code == ENOSPC ? "ENOSPC" : code == EDQUOT ? "EDQUOT"
    : code == E2BIG ? "E2BIG" : code == ERANGE ? "ERANGE" : code == ENOTDIR ? "ENOTDIR"
    : code == ELOOP ? "ELOOP" : code == EINVAL ? "EINVAL" : code == EROFS ? "EROFS" : "EIO";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "code", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "path", value);
  napi_create_int32(env, -code, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_throw(env, error);
  return NULL;
}

static char* string_arg(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) return NULL;
  char* out = malloc(length + 1);
  if (out == NULL) return NULL;
  napi_get_value_string_utf8(env, value, out, length + 1, &length);
  return out;
}

static napi_value list(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char* path = argc < 1 ? NULL : string_arg(env, argv[0]);
  if (path == NULL) { napi_throw_type_error(env, NULL, "list(path: string)"); return NULL; }
  napi_create_array(env, &result);
  char stack[4096];
  char* names = stack;
  ssize_t size = llistxattr(path, names, sizeof stack);
  while (size < 0 && errno == ERANGE) {
    ssize_t need = llistxattr(path, NULL, 0);
    if (need < 0) break;
    if (names != stack) free(names);
    names = malloc(need + 1);
    if (names == NULL) { free(path); napi_throw_error(env, NULL, "out of memory"); return NULL; }
    size = llistxattr(path, names, need + 1);
  }
  if (size < 0) {
    int code = errno;
    if (names != stack) free(names);
    if (code == ENOTSUP || code == ENODATA) { free(path); return result; }
    napi_value thrown = throw_errno(env, code, "llistxattr", path);
    free(path);
    return thrown;
  }
  uint32_t index = 0;
  for (ssize_t at = 0; at < size; at += strlen(names + at) + 1) {
    const char* name = names + at;
    char small[1024];
    char* value = small;
    ssize_t got = lgetxattr(path, name, value, sizeof small);
    while (got < 0 && errno == ERANGE) {
      ssize_t need = lgetxattr(path, name, NULL, 0);
      if (need < 0) break;
      if (value != small) free(value);
      value = malloc(need + 1);
      if (value == NULL) break;
      got = lgetxattr(path, name, value, need + 1);
    }
    if (got < 0) {
      int code = errno;
      if (value != small && value != NULL) free(value);
      if (code == ENODATA) continue; // removed meanwhile
      if (code == EACCES || code == EPERM) {
        napi_value pair, js_name, js_code;
        napi_create_array_with_length(env, 2, &pair);
        napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &js_name);
        napi_create_string_utf8(env, code == EACCES ? "EACCES" : "EPERM", NAPI_AUTO_LENGTH, &js_code);
        napi_set_element(env, pair, 0, js_name);
        napi_set_element(env, pair, 1, js_code);
        napi_set_element(env, result, index++, pair);
        continue;
      }
      if (names != stack) free(names);
      napi_value thrown = throw_errno(env, code, "lgetxattr", path);
      free(path);
      return thrown;
    }
    napi_value pair, js_name, js_value;
    void* data;
    napi_create_array_with_length(env, 2, &pair);
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &js_name);
    napi_create_buffer_copy(env, (size_t)got, value, &data, &js_value);
    napi_set_element(env, pair, 0, js_name);
    napi_set_element(env, pair, 1, js_value);
    napi_set_element(env, result, index++, pair);
    if (value != small) free(value);
  }
  if (names != stack) free(names);
  free(path);
  return result;
}

static napi_value set(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_buffer = false;
  if (argc >= 3) napi_is_buffer(env, argv[2], &is_buffer);
  char* path = argc < 3 ? NULL : string_arg(env, argv[0]);
  char* name = argc < 3 ? NULL : string_arg(env, argv[1]);
  if (path == NULL || name == NULL || !is_buffer) {
    free(path);
    free(name);
    napi_throw_type_error(env, NULL, "set(path: string, name: string, value: Buffer)");
    return NULL;
  }
  void* data;
  size_t length;
  napi_get_buffer_info(env, argv[2], &data, &length);
  napi_value result = NULL;
  if (lsetxattr(path, name, data, length, 0) != 0) result = throw_errno(env, errno, "lsetxattr", path);
  else napi_get_undefined(env, &result);
  free(path);
  free(name);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "list", NAPI_AUTO_LENGTH, list, NULL, &fn);
  napi_set_named_property(env, exports, "list", fn);
  napi_create_function(env, "set", NAPI_AUTO_LENGTH, set, NULL, &fn);
  napi_set_named_property(env, exports, "set", fn);
  return exports;
}
