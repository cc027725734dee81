/* tests/fuzz/make_seeds.c: writes the seed corpora of the fuzz targets into
 * tests/fuzz/corpus/<target>/ from tiny models, the golden checkpoints and
 * hand-made mutations of them. Run by `scripts/fuzz.sh --seeds`; output committed. */
#define _GNU_SOURCE /* memmem, mkdtemp */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "io/safetensors.h"
#include "model/model_internal.h"

static const char *out_dir, *golden_dir;
static int n_written;

static void die(const char *what, const qs_error *err) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

static void put(const char *target, const char *name, const void *a, size_t na, const void *b,
                size_t nb) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f))
        die(path, NULL);
    n_written++;
}

static uint8_t *slurp(const char *rel, size_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", golden_dir, rel);
    uint8_t *b;
    qs_error err = {0};
    if (qs_read_file(path, 1 << 24, &b, n, &err)) die(path, &err);
    return b;
}

/* The variants of quantscope's config keys, on a model small enough that a
 * forward costs microseconds (vocab 16: no byte tokenizer). */
static const char *const variants[][2] = {
    {"vanilla", ""},
    {"clipped", ", \"attn_softmax\": \"clipped_softmax\", \"clip_gamma\": -0.03, \"clip_zeta\": 1.003"},
    {"clipped_alpha", ", \"attn_softmax\": \"clipped_softmax\", \"clip_alpha\": 4, \"clip_seq_len\": 8"},
    {"softmax1", ", \"attn_softmax\": \"softmax1\""},
    {"gate_head", ", \"attn_gate_type\": \"unconditional_per_head\""},
    {"gate_token", ", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_init\": 0.25"},
    {"gate_mlp", ", \"attn_gate_type\": \"conditional_per_token\", \"attn_gate_mlp\": true, "
                 "\"attn_gate_mlp_hidden\": 2"},
    {"gate_all", ", \"attn_gate_type\": \"conditional_per_token\", "
                 "\"attn_gate_linear_all_features\": true"},
    {"op", ", \"block_type\": \"op\", \"op_beta\": 0.2"},
};

static qs_model *tiny(const char *arch, const char *extra, char *json, size_t cap) {
    int bert = !strcmp(arch, "bert");
    snprintf(json, cap,
             "{\"model_type\": \"%s\", \"vocab_size\": 16, \"hidden_size\": 8, "
             "\"num_hidden_layers\": %d, \"num_attention_heads\": 2, \"%s\": 16, "
             "\"max_position_embeddings\": 8%s%s}",
             arch, bert ? 1 : 2, bert ? "intermediate_size" : "ffn_dim",
             bert ? ", \"type_vocab_size\": 2, \"tokenizer\": \"none\"" : "", extra);
    qs_config c;
    qs_error err = {0};
    qs_model *m = NULL;
    if (qs_config_from_json(json, strlen(json), &c, &err) || qs_model_create(&c, 3, &m, &err))
        die(json, &err);
    return m;
}

static uint8_t *serialize(const qs_model *m, size_t *len) {
    qs_st_entry *e = calloc((size_t)m->n_table, sizeof *e);
    for (int i = 0; i < m->n_table; i++) {
        e[i].name = m->table[i].name;
        e[i].data = m->params + m->table[i].offset;
        e[i].ndim = m->table[i].ndim;
        for (int d = 0; d < e[i].ndim; d++) e[i].shape[d] = m->table[i].shape[d];
    }
    static const char *const meta[] = {"format", "pt"};
    uint8_t *buf;
    qs_error err = {0};
    if (qs_st_serialize(e, m->n_table, meta, 1, &buf, len, &err)) die("serialize", &err);
    free(e);
    return buf;
}

/* A safetensors file from a header and raw data (for dtypes the writer lacks). */
static void put_raw_st(const char *name, const char *header, const void *data, size_t n) {
    size_t h = strlen(header);
    uint8_t *b = malloc(8 + h + n);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    if (n) memcpy(b + 8 + h, data, n);
    put("safetensors", name, b, 8 + h + n, NULL, 0);
    free(b);
}

/* The serialized file st with the data_offsets of tensor `name` replaced by
 * those of tensor `onto`: two tensors on the same bytes (and a hole). */
static uint8_t *repoint(const uint8_t *st, size_t len, const char *name, const char *onto,
                        size_t *out_len) {
    qs_safetensors parsed;
    qs_error err = {0};
    if (qs_st_parse(st, len, "seed", &parsed, &err)) die("repoint", &err);
    const qs_st_tensor *t = qs_st_find(&parsed, onto);
    if (!t) die(onto, NULL);
    char mid[64];
    int ml = snprintf(mid, sizeof mid, "\"data_offsets\":[%zu,%zu", t->begin, t->end);
    qs_st_free(&parsed);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | st[i];
    const char *h = (const char *)st + 8;
    char key[160];
    snprintf(key, sizeof key, "\"%s\":{", name);
    const char *at = memmem(h, hl, key, strlen(key));
    at = at ? memmem(at, (size_t)(h + hl - at), "\"data_offsets\":[", 16) : NULL;
    const char *close = at ? memchr(at, ']', (size_t)(h + hl - at)) : NULL;
    if (!close) die(name, NULL);
    size_t pre = (size_t)(at - h), post = (size_t)(h + hl - close), nh = pre + (size_t)ml + post;
    size_t data = len - 8 - (size_t)hl;
    uint8_t *b = malloc(8 + nh + data);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)nh >> (8 * i));
    memcpy(b + 8, h, pre);
    memcpy(b + 8 + pre, mid, (size_t)ml);
    memcpy(b + 8 + pre + ml, close, post);
    memcpy(b + 8 + nh, h + hl, data);
    *out_len = 8 + nh + data;
    return b;
}

static void model_seeds(void) {
    char json[1024], name[128];
    for (int a = 0; a < 2; a++) {
        const char *arch = a ? "opt" : "bert";
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            if (a && v != 0 && v != 5 && v != 8) continue; /* OPT: vanilla, gated, op */
            qs_model *m = tiny(arch, variants[v][1], json, sizeof json);
            size_t len;
            uint8_t *st = serialize(m, &len);
            char cfg[4096];
            int n = qs_config_write_json(qs_model_config(m), cfg, sizeof cfg);
            snprintf(name, sizeof name, "tiny-%s-%s", arch, variants[v][0]);
            put("safetensors", name, st, len, NULL, 0);
            put("config", name, cfg, (size_t)n, NULL, 0);
            /* model target: config, NUL, safetensors */
            put("model", name, cfg, (size_t)n + 1, st, len);
            if (v == 0 && !a) {
                /* Broken format rules (issue 12): the key weight on the
                 * query's bytes, and config.json with a key twice. */
                size_t rl;
                uint8_t *r = repoint(st, len, "bert.encoder.layer.0.attention.self.key.weight",
                                     "bert.encoder.layer.0.attention.self.query.weight", &rl);
                put("model", "overlap-bert", cfg, (size_t)n + 1, r, rl);
                put("safetensors", "overlap-bert", r, rl, NULL, 0);
                free(r);
                char dup[4200];
                int dn = snprintf(dup, sizeof dup, "%.*s,\n  \"hidden_size\": 16\n}\n",
                                  (int)(strrchr(cfg, '}') - cfg), cfg);
                put("model", "duplicate-key-bert", dup, (size_t)dn + 1, st, len);
                put("config", "duplicate-key-bert", dup, (size_t)dn, NULL, 0);
            }
            if (v == 0) {
                /* the hand-written short form of the same config */
                snprintf(name, sizeof name, "short-%s", arch);
                put("config", name, json, strlen(json), NULL, 0);
                put("model", name, json, strlen(json) + 1, st, len);
                /* truncated data, and a header whose length field is too big */
                snprintf(name, sizeof name, "truncated-%s", arch);
                put("model", name, cfg, (size_t)n + 1, st, len - 100);
                st[3] = 0x7f;
                snprintf(name, sizeof name, "hlen-%s", arch);
                put("safetensors", name, st, len, NULL, 0);
            }
            free(st);
            qs_model_free(m);
        }
    }
    /* The golden checkpoints: their configs, the OPT weights for the reader
     * (370 KB: the whole-model target gets no file that size, it would run
     * ten times slower), and each golden config shrunk to a tiny model. */
    size_t nc, no, noc;
    uint8_t *bcfg = slurp("bert/config.json", &nc), *ocfg = slurp("opt/config.json", &noc);
    uint8_t *opt = slurp("opt/model.safetensors", &no);
    put("safetensors", "golden-opt", opt, no, NULL, 0);
    put("config", "golden-bert", bcfg, nc, NULL, 0);
    put("config", "golden-opt", ocfg, noc, NULL, 0);
    for (int g = 0; g < 2; g++) {
        qs_config c;
        qs_error err = {0};
        qs_model *m = NULL;
        const char *text = (const char *)(g ? ocfg : bcfg);
        if (qs_config_from_json(text, g ? noc : nc, &c, &err)) die("golden config", &err);
        c.vocab_size = 16, c.hidden_size = 8, c.n_layers = 1, c.n_heads = 2;
        c.intermediate_size = 16, c.max_positions = 8;
        if (qs_model_create(&c, 3, &m, &err)) die("golden shrunk", &err);
        size_t len;
        uint8_t *st = serialize(m, &len);
        char cfg[4096];
        int n = qs_config_write_json(&c, cfg, sizeof cfg);
        put("model", g ? "golden-opt-shrunk" : "golden-bert-shrunk", cfg, (size_t)n + 1, st, len);
        free(st);
        qs_model_free(m);
    }
    free(bcfg), free(opt), free(ocfg);

    /* Dtypes the writer does not produce, metadata, empty and zero-size tensors. */
    const uint16_t half[6] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000, 0x3555};
    put_raw_st("f16", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", half, 12);
    put_raw_st("bf16", "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"BF16\",\"shape\":[3,2],"
               "\"data_offsets\":[0,12]}}", half, 12);
    put_raw_st("i64", "{\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
               "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[8,8]}}", half, 8);
    put_raw_st("empty", "{}", NULL, 0);
    put_raw_st("scalar", "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", half, 4);
    put_raw_st("escaped", "{\"n\\u00e9\\\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               half, 4);
    /* The format indexes the data section fully (issue 12): tensors on the
     * same bytes or shifted by 4, a hole, trailing bytes, a name twice. */
    put_raw_st("overlap-same", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", half, 8);
    put_raw_st("overlap-shift4", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", half, 12);
    put_raw_st("hole", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", half, 12);
    put_raw_st("trailing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
               half, 8);
    put_raw_st("duplicate-name", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", half, 8);
}

static void config_seeds(void) {
    static const char *const hand[][2] = {
        {"hf-bert", "{\"architectures\": [\"BertForMaskedLM\"], \"attention_probs_dropout_prob\": 0.1, "
                    "\"hidden_act\": \"gelu\", \"hidden_dropout_prob\": 0.1, \"hidden_size\": 32, "
                    "\"initializer_range\": 0.02, \"intermediate_size\": 37, \"layer_norm_eps\": 1e-12, "
                    "\"max_position_embeddings\": 512, \"model_type\": \"bert\", "
                    "\"num_attention_heads\": 4, \"num_hidden_layers\": 5, \"pad_token_id\": 0, "
                    "\"position_embedding_type\": \"absolute\", \"torch_dtype\": \"float32\", "
                    "\"transformers_version\": \"4.30.0\", \"type_vocab_size\": 16, "
                    "\"use_cache\": true, \"vocab_size\": 99, \"id2label\": {\"0\": \"A\"}}"},
        {"hf-opt", "{\"_remove_final_layer_norm\": false, \"activation_function\": \"relu\", "
                   "\"do_layer_norm_before\": true, \"enable_bias\": true, \"ffn_dim\": 37, "
                   "\"hidden_size\": 16, \"layer_norm_elementwise_affine\": true, "
                   "\"max_position_embeddings\": 20, \"model_type\": \"opt\", "
                   "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 50, "
                   "\"word_embed_proj_dim\": 16, \"tie_word_embeddings\": true, \"bos_token_id\": 2}"},
        {"unknown-key", "{\"model_type\": \"bert\", \"colour\": 3}"},
        {"bad-number", "{\"model_type\": \"bert\", \"vocab_size\": 1e400, \"layer_norm_eps\": -0}"},
        {"unicode", "{\"model_type\": \"b\\u0065rt\", \"_name_or_path\": \"\\ud83d\\ude00\"}"},
        {"nested", "{\"model_type\": \"opt\", \"id2label\": [[[[[[[[{}]]]]]]]]}"},
        {"duplicate-key", "{\"model_type\": \"bert\", \"vocab_size\": 30, \"hidden_size\": 8, "
                          "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
                          "\"intermediate_size\": 8, \"hidden_size\": 16}"},
        {"duplicate-nested", "{\"model_type\": \"bert\", \"id2label\": {\"0\": \"A\", \"0\": \"B\"}}"},
    };
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++)
        put("config", hand[i][0], hand[i][1], strlen(hand[i][1]), NULL, 0);
}

static void tokenizer_seeds(void) {
    static const char *const vocabs[][2] = {
        {"basic", "\001[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\nhello\n,\n!\n"},
        {"crlf-cased", "\000[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nThe\r\n##ing\r\n\r\n\xe4\xb8\xad\rcaf\xc3\xa9"},
        {"duplicates", "\001[UNK]\n[UNK]\na\n##a\n##a\n[CLS]\n[SEP]\n\n\n"},
        {"no-unk", "\001[CLS]\n[SEP]\nhello\n"},
        {"no-cls", "\001[UNK]\nhello\n##o\n"},
        {"invalid-utf8", "\001[UNK]\n\xc0\xaf\n"},
    };
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++)
        put("wordpiece", vocabs[i][0], vocabs[i][1], strlen(vocabs[i][1] + 1) + 1, NULL, 0);
    static const char *const texts[][2] = {
        {"ascii", "In the beginning God created the heaven and the earth."},
        {"utf8", "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 [CLS]"},
        {"binary", "\x00\x01\xff\xfe\x80\x7f\n\t\r\\x00"},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        put("byte_tokenizer", texts[i][0], texts[i][1], i == 2 ? 13 : strlen(texts[i][1]), NULL, 0);
}

static void resume_seeds(void) {
    char dir[] = "/tmp/qs-seeds-XXXXXX", path[96];
    if (!mkdtemp(dir)) die("mkdtemp", NULL);
    qs_model *m = fuzz_tiny_model();
    qs_train_config tc = fuzz_train_config();
    qs_trainer *t = NULL;
    qs_error err = {0};
    if (qs_trainer_new(m, &tc, FUZZ_CORPUS, sizeof FUZZ_CORPUS - 1, &t, NULL, &err))
        die("trainer", &err);
    for (int step = 0; step <= tc.steps; step += 2) {
        if (step && (qs_trainer_step(t, NULL, &err) || qs_trainer_step(t, NULL, &err)))
            die("step", &err);
        if (qs_trainer_save(t, dir, &err)) die("save", &err);
        snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
        size_t n;
        uint8_t *b;
        if (qs_read_file(path, 1 << 24, &b, &n, &err)) die(path, &err);
        char name[32];
        snprintf(name, sizeof name, "step%d", step);
        put("resume", name, b, n, NULL, 0);
        if (step == 2) {
            /* another run's fingerprint; and the model file in place of the state */
            char *fp = memmem(b, n, "\"fingerprint\":\"", 15);
            if (fp) fp[15] ^= 1;
            put("resume", "other-fingerprint", b, n, NULL, 0);
        }
        free(b);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t n;
    uint8_t *b;
    if (qs_read_file(path, 1 << 24, &b, &n, &err)) die(path, &err);
    put("resume", "model-file", b, n, NULL, 0);
    free(b);
    static const char *const files[] = {"train_state.safetensors", "model.safetensors", "config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
    qs_trainer_free(t);
    qs_model_free(m);
}

/* fuzz_quant's layout: wbits, abits, flags, u32 points, f32 percentile,
 * strings, then floats. */
static void quant_seed(const char *name, int wb, int ab, int flags, uint32_t points, float pct,
                       const char *wg, const char *ag, const char *est, const char *pts,
                       const float *v, size_t nv) {
    uint8_t b[2048];
    size_t k = 0;
    b[k++] = (uint8_t)wb, b[k++] = (uint8_t)ab, b[k++] = (uint8_t)flags;
    memcpy(b + k, &points, 4), k += 4;
    memcpy(b + k, &pct, 4), k += 4;
    const char *strs[] = {wg, ag, est, pts};
    for (int i = 0; i < 4; i++) {
        memcpy(b + k, strs[i], strlen(strs[i]) + 1);
        k += strlen(strs[i]) + 1;
    }
    memcpy(b + k, v, nv * 4);
    put("quant", name, b, k + nv * 4, NULL, 0);
}

static void quant_seeds(void) {
    const float normal[] = {-1.5f, 2.25f, 0.1f, -0.3f, 0.0f, 1.0f, 3.0f, -2.0f};
    const float constant[] = {0.37f, 0.37f, 0.37f, 0.37f, 0.37f, 0.37f, 0.37f, 0.37f};
    const float zeros[8] = {0};
    const float extreme[] = {-3.4028235e38f, 3.4028235e38f, 1e-45f, -1e-45f, 1e30f, -1e30f, 0, 1};
    const float nan[] = {0.0f, 1.0f, NAN, INFINITY};
    quant_seed("w8a8", 8, 8, 0x01, QS_PT_ALL, 99.999f, "tensor", "tensor", "running_minmax", "",
               normal, 8);
    quant_seed("w4a8-channel-mse", 4, 8, 0x05, QS_PT_ALL, 99.99f, "channel", "tensor", "mse",
               "q,k,v,ffn_h", constant, 8);
    quant_seed("w2a16-token", 2, 16, 0x02, 0, 100.0f, "tensor", "token", "minmax", "", zeros, 8);
    quant_seed("w16a2-percentile", 16, 2, 0x07, QS_PT_ALL, 99.9f, "channel", "tensor",
               "percentile", "embed,attn_in,scores,probs,final", extreme, 8);
    quant_seed("float", 0, 0, 0x00, QS_PT_ALL, 50.0f, "tensor", "tensor", "minmax", "", nan, 4);
    quant_seed("bad-names", 8, 17, 0xf0, 0xffffffffu, -1.0f, "row", "channel", "kmeans", "q,,x",
               normal, 8);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: make_seeds OUT_DIR GOLDEN_DIR\n");
        return 2;
    }
    out_dir = argv[1];
    golden_dir = argv[2];
    mkdir(out_dir, 0755);
    model_seeds();
    config_seeds();
    tokenizer_seeds();
    resume_seeds();
    quant_seeds();
    printf("make_seeds: %d files in %s\n", n_written, out_dir);
    return 0;
}
