/* reinforce-jax: envpool's XLA calls with the pool named by an operand, not an attribute.
 *
 * envpool's FFI handlers find their pool in the call's `handle` attribute, so a compiled program
 * holds the pool's address and never matches JAX's persistent cache in another process. This
 * handler is called instead, with the same operands except the first: a uint8[24] "route" of
 * three words, the pool's handle and the addresses of envpool's send and recv handlers (attribute
 * `word` picks one). It calls that handler with envpool's own 8-byte handle operand and result
 * and a `handle` attribute holding the pool's address, so the program's text is the same in every
 * process. CPU only: the route is read on the host.
 */
#include <stdint.h>
#include <string.h>

#include "xla/ffi/api/c_api.h"

static int is_named(const XLA_FFI_ByteSpan* span, const char* name) {
  size_t n = strlen(name);
  return span->len == n && memcmp(span->ptr, name, n) == 0;
}

static XLA_FFI_Error* fail(XLA_FFI_CallFrame* frame, const char* message) {
  XLA_FFI_Error_Create_Args args = {XLA_FFI_Error_Create_Args_STRUCT_SIZE, NULL, message,
                                    XLA_FFI_Error_Code_INVALID_ARGUMENT};
  return frame->api->XLA_FFI_Error_Create(&args);
}

XLA_FFI_Error* reinforce_jax_envpool_route(XLA_FFI_CallFrame* frame) {
  XLA_FFI_Extension_Base* ext = frame->extension_start;
  if (ext != NULL && ext->type == XLA_FFI_Extension_Metadata) {
    /* XLA asks which FFI version the handler was built against (no traits, no state). */
    XLA_FFI_Metadata* metadata = ((XLA_FFI_Metadata_Extension*)ext)->metadata;
    metadata->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
    metadata->api_version.extension_start = NULL;
    metadata->api_version.major_version = XLA_FFI_API_MAJOR;
    metadata->api_version.minor_version = XLA_FFI_API_MINOR;
    metadata->traits = 0;
    return NULL;
  }
  if (frame->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;

  XLA_FFI_Scalar* handle_attr = NULL;
  XLA_FFI_ByteSpan* handle_name = NULL;
  int64_t word = 0;
  for (int64_t i = 0; i < frame->attrs.size; ++i) {
    if (frame->attrs.types[i] != XLA_FFI_AttrType_SCALAR) continue;
    XLA_FFI_Scalar* scalar = (XLA_FFI_Scalar*)frame->attrs.attrs[i];
    if (is_named(frame->attrs.names[i], "handle") && scalar->dtype == XLA_FFI_DataType_S64) {
      handle_attr = scalar;
      handle_name = frame->attrs.names[i];
    } else if (is_named(frame->attrs.names[i], "word") &&
               scalar->dtype == XLA_FFI_DataType_S64) {
      word = *(const int64_t*)scalar->value;
    }
  }
  if (handle_attr == NULL || (word != 1 && word != 2) || frame->args.size < 1 ||
      frame->rets.size < 1 || frame->args.types[0] != XLA_FFI_ArgType_BUFFER ||
      frame->rets.types[0] != XLA_FFI_RetType_BUFFER)
    return fail(frame, "reinforce_jax_envpool_route: not a routed envpool call");
  XLA_FFI_Buffer* route = (XLA_FFI_Buffer*)frame->args.args[0];
  if (route->dtype != XLA_FFI_DataType_U8 || route->rank != 1 || route->dims[0] != 24)
    return fail(frame, "reinforce_jax_envpool_route: the route operand is not uint8[24]");

  uint64_t words[3];
  memcpy(words, route->data, sizeof words);
  XLA_FFI_Handler* target = (XLA_FFI_Handler*)(uintptr_t)words[word];
  int64_t handle = (int64_t)words[0];
  if (target == NULL || handle == 0)
    return fail(frame, "reinforce_jax_envpool_route: an empty route");

  /* envpool's view: its 8-byte handle in the route's first word, the same other operands and
     results, and one attribute, `handle`. */
  int64_t eight = 8;
  XLA_FFI_Buffer handle_arg = *route;
  XLA_FFI_Buffer handle_ret = *(XLA_FFI_Buffer*)frame->rets.rets[0];
  handle_arg.dims = &eight;
  handle_ret.dims = &eight;
  void* args[frame->args.size];
  void* rets[frame->rets.size];
  memcpy(args, frame->args.args, sizeof args);
  memcpy(rets, frame->rets.rets, sizeof rets);
  args[0] = &handle_arg;
  rets[0] = &handle_ret;
  XLA_FFI_Scalar handle_value = {XLA_FFI_DataType_S64, &handle};
  XLA_FFI_AttrType attr_type = XLA_FFI_AttrType_SCALAR;
  XLA_FFI_ByteSpan* attr_names[1] = {handle_name};
  void* attr_values[1] = {&handle_value};

  XLA_FFI_CallFrame inner = *frame;
  inner.args.args = args;
  inner.rets.rets = rets;
  inner.attrs.size = 1;
  inner.attrs.types = &attr_type;
  inner.attrs.names = attr_names;
  inner.attrs.attrs = attr_values;
  XLA_FFI_Error* error = target(&inner);
  frame->future = inner.future;
  return error;
}
