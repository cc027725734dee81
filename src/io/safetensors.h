/* io/safetensors.h: reading and writing the safetensors format (8-byte
 * little-endian header length, JSON header, raw tensor bytes), fully validated. */
#ifndef QS_IO_SAFETENSORS_H
#define QS_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "quantscope/status.h"

#define QS_ST_MAX_DIMS 8
#define QS_ST_MAX_HEADER (100u << 20) /* the format's own 100 MB header limit */

typedef enum { QS_DT_F32, QS_DT_F16, QS_DT_BF16, QS_DT_OTHER } qs_dtype;

typedef struct qs_st_tensor {
    char *name;
    char dtype_name[8]; /* as written: "F32", "F16", "I64", ... */
    qs_dtype dtype;
    int ndim;
    int64_t shape[QS_ST_MAX_DIMS];
    size_t begin, end; /* byte range inside the data section */
} qs_st_tensor;

typedef struct qs_safetensors {
    const char *what;    /* file name used in messages (not owned) */
    const uint8_t *data; /* data section (inside the caller's buffer) */
    size_t data_len;
    qs_st_tensor *tensors;
    int n_tensors;
    char **meta;  /* __metadata__ string pairs: key0, value0, key1, ... */
    int n_meta;
} qs_safetensors;

/* Parses and validates the header of a whole file held in buf (len bytes);
 * buf must outlive st. Checks: header length vs file size, JSON (no duplicate
 * tensor names), dtypes, shapes, offsets inside the data section, byte counts
 * matching shapes, and that the tensors cover the data section exactly: no
 * overlaps, no holes, no trailing bytes. */
qs_status qs_st_parse(const uint8_t *buf, size_t len, const char *what, qs_safetensors *st,
                      qs_error *err);
/* The first checks of qs_st_parse, on the first 8 bytes of a file of len
 * bytes (first8 may be NULL when len < 8): the file holds a header length,
 * the header fits in the file and in the format's limit. Sets *hlen. */
qs_status qs_st_header_len(const uint8_t *first8, size_t len, const char *what, size_t *hlen,
                           qs_error *err);
/* qs_st_parse for a file of len bytes of which only the first 8 + hlen are
 * at hand in head (a file read in pieces): the same checks and messages;
 * st->data is NULL, data_len and the tensors' ranges are set. */
qs_status qs_st_parse_header(const uint8_t *head, size_t len, const char *what, qs_safetensors *st,
                             qs_error *err);
void qs_st_free(qs_safetensors *st);

const qs_st_tensor *qs_st_find(const qs_safetensors *st, const char *name);
/* A __metadata__ value, or NULL. */
const char *qs_st_meta(const qs_safetensors *st, const char *key);

/* Copies a tensor into dst as float32 (F32, F16 and BF16 are converted),
 * checking that its shape is exactly `shape` (ndim dims) and that every value
 * is finite; errors name the file, tensor, expected and actual shape/value. */
qs_status qs_st_read_f32(const qs_safetensors *st, const char *name, const int64_t *shape,
                         int ndim, float *dst, qs_error *err);
/* The checks qs_st_read_f32 makes before it reads: the tensor is there, has
 * exactly `shape` and a float dtype. */
qs_status qs_st_check(const qs_safetensors *st, const char *name, const int64_t *shape, int ndim,
                      qs_error *err);
/* qs_st_read_f32's error for value v at flat index `index` of tensor name. */
qs_status qs_st_nonfinite(const qs_safetensors *st, const char *name, float v, size_t index,
                          qs_error *err);
/* Converts n little-endian values of dtype dt (F32, F16 or BF16) at p into
 * dst, all of them; returns the index of the first non-finite one, or n. */
size_t qs_st_convert(qs_dtype dt, const uint8_t *p, size_t n, float *dst);

/* One tensor to write. */
typedef struct qs_st_entry {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[QS_ST_MAX_DIMS];
} qs_st_entry;

/* Serialises F32 tensors (and optional string metadata pairs, may be NULL)
 * into a malloc'd buffer *out of *out_len bytes. */
qs_status qs_st_serialize(const qs_st_entry *entries, int n, const char *const *meta_kv,
                          int n_meta, uint8_t **out, size_t *out_len, qs_error *err);

/* Writes bytes to path atomically: a temporary file "path.tmpPID" in the same
 * folder, fsync, rename, then fsync of the folder, so a crash or power cut
 * leaves either the old or the new file. */
qs_status qs_write_file_atomic(const char *path, const void *bytes, size_t len, qs_error *err);

/* Removes the "NAME.tmpPID" files in dir, for each of the n_names NAMEs, that a
 * process killed during qs_write_file_atomic left behind (files of a process
 * still running are kept). Returns how many were removed; a folder that cannot
 * be read removes nothing. */
int qs_remove_stale_tmp(const char *dir, const char *const *names, int n_names);

/* Reads a whole file into a malloc'd buffer (limit: max_bytes). */
qs_status qs_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len,
                       qs_error *err);

/* The same for the file `name` in folder dir (model folders, run folders). */
qs_status qs_read_file_in(const char *dir, const char *name, size_t max_bytes, uint8_t **out,
                          size_t *out_len, qs_error *err);
qs_status qs_write_file_atomic_in(const char *dir, const char *name, const void *bytes, size_t len,
                                  qs_error *err);
/* dir + "/" + name, malloc'd (caller frees); NULL when out of memory. */
char *qs_path_join(const char *dir, const char *name);

#endif
