/* model/config.c: config.json -> qs_config. Hugging Face BERT and OPT keys plus
 * quantscope's attention-variant keys; unknown keys and unsupported values fail. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"
#include "model/model_internal.h"

/* Keys Hugging Face writes that do not change inference; accepted and ignored. */
static const char *const ignored_keys[] = {
    "architectures", "attention_probs_dropout_prob", "hidden_dropout_prob", "dropout",
    "attention_dropout", "activation_dropout", "layerdrop", "bos_token_id", "eos_token_id",
    "pad_token_id", "sep_token_id", "cls_token_id", "mask_token_id", "dtype", "torch_dtype",
    "transformers_version", "use_cache", "initializer_range", "init_std", "classifier_dropout",
    "is_decoder", "add_cross_attention", "gradient_checkpointing", "_name_or_path", "prefix",
    "id2label", "label2id", "num_labels", "problem_type", "return_dict", "output_attentions",
    "output_hidden_states", "chunk_size_feed_forward", "tokenizer_class", "decoder_start_token_id",
    "scale_embedding", "torchscript", "quantscope", "training", NULL};

static int key_in(const char *key, const char *const *list) {
    for (; *list; list++)
        if (strcmp(key, *list) == 0) return 1;
    return 0;
}

typedef struct reader {
    const qs_json *root;
    const char *what;
    qs_error *err;
    qs_status status;
} reader;

/* Each getter leaves the default in place when the key is absent and records
 * the first error (later calls then do nothing). */
static const qs_json *get(reader *r, const char *key, qs_json_type want) {
    if (r->status) return NULL;
    const qs_json *v = qs_json_get(r->root, key);
    if (!v || v->type == QS_JSON_NULL) return NULL;
    if (v->type != want) {
        r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: key '%s' is a %s, expected a %s", r->what,
                            key, qs_json_type_name(v->type), qs_json_type_name(want));
        return NULL;
    }
    return v;
}

static void get_int(reader *r, const char *key, int *out, int lo, int hi) {
    const qs_json *v = get(r, key, QS_JSON_NUMBER);
    if (!v) return;
    if (v->number != floor(v->number) || v->number < lo || v->number > hi) {
        r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: key '%s' = %g, expected an integer in "
                            "[%d, %d]", r->what, key, v->number, lo, hi);
        return;
    }
    *out = (int)v->number;
}

static void get_float(reader *r, const char *key, float *out) {
    const qs_json *v = get(r, key, QS_JSON_NUMBER);
    if (!v) return;
    /* Past FLT_MAX the value would become inf, pass the range checks below
     * and be written back as "inf", which is not JSON (tests/fuzz/fuzz_config.c).
     * Up to half a step (2^103) above FLT_MAX it still rounds to FLT_MAX, which
     * the writer prints as 3.40282347e+38. */
    if (!(fabs(v->number) < (double)FLT_MAX + ldexp(1.0, 103))) {
        r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: key '%s' = %g is outside the range of a "
                            "32-bit float", r->what, key, v->number);
        return;
    }
    *out = (float)v->number;
}

static void get_bool(reader *r, const char *key, int *out) {
    const qs_json *v = get(r, key, QS_JSON_BOOL);
    if (v) *out = (int)v->number;
}

/* String key whose value must be one of names[]; *out gets its index. */
static void get_enum(reader *r, const char *key, const char *const *names, int *out) {
    const qs_json *v = get(r, key, QS_JSON_STRING);
    if (!v) return;
    for (int i = 0; names[i]; i++)
        if (strcmp(v->string, names[i]) == 0) {
            *out = i;
            return;
        }
    char list[256] = "";
    for (int i = 0; names[i]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, names[i], sizeof list - strlen(list) - 1);
    }
    r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: key '%s' = \"%s\" is not supported (one of: %s)",
                        r->what, key, v->string, list);
}

/* A key whose only supported value is `want` (a boolean or a number). */
static void require_value(reader *r, const char *key, double want, const char *why) {
    if (r->status) return;
    const qs_json *v = qs_json_get(r->root, key);
    if (!v || v->type == QS_JSON_NULL) return;
    if ((v->type != QS_JSON_BOOL && v->type != QS_JSON_NUMBER) || v->number != want)
        r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: key '%s' has a value quantscope does not "
                            "support (%s)", r->what, key, why);
}

static const char *const bert_keys[] = {
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
    "hidden_act", "position_embedding_type", "tie_word_embeddings", NULL};
static const char *const opt_keys[] = {
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "ffn_dim", "max_position_embeddings", "activation_function", "do_layer_norm_before",
    "word_embed_proj_dim", "enable_bias", "layer_norm_elementwise_affine",
    "_remove_final_layer_norm", "tie_word_embeddings", "layer_norm_eps", NULL};
static const char *const variant_keys[] = {
    "attn_softmax", "clip_gamma", "clip_zeta", "clip_alpha", "clip_seq_len", "attn_gate_type",
    "attn_gate_mlp", "attn_gate_mlp_hidden", "attn_gate_linear_all_features", "attn_gate_init",
    "tokenizer", "do_lower_case", "block_type", "op_beta", NULL};

static const char *const softmax_names[] = {"softmax", "clipped_softmax", "softmax1", NULL};
static const char *const gate_names[] = {"none", "unconditional_per_head", "conditional_per_token",
                                         NULL};
static const char *const tokenizer_names[] = {"none", "byte", "wordpiece", NULL};
static const char *const block_names[] = {"standard", "op", NULL};

/* model_type and the set of keys: every key is known for that architecture. */
static void read_model_type(reader *r, qs_config *c) {
    static const char *const archs[] = {"bert", "opt", NULL};
    const qs_json *root = r->root, *mt = qs_json_get(root, "model_type");
    if (root->type != QS_JSON_OBJECT) {
        r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: expected a JSON object", r->what);
        return;
    }
    if (!mt || mt->type != QS_JSON_STRING) {
        r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: missing string key 'model_type' (\"bert\" "
                            "or \"opt\")", r->what);
        return;
    }
    int arch = -1;
    get_enum(r, "model_type", archs, &arch);
    if (r->status) return;
    c->arch = (qs_arch)arch;
    const char *const *arch_keys = c->arch == QS_ARCH_BERT ? bert_keys : opt_keys;
    for (size_t i = 0; i < root->count; i++) {
        const char *k = root->keys[i];
        if (!key_in(k, arch_keys) && !key_in(k, variant_keys) && !key_in(k, ignored_keys)) {
            r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: unknown config key '%s' for model_type "
                                "\"%s\"", r->what, k, mt->string);
            return;
        }
    }
}

/* The Hugging Face keys: sizes, LayerNorm, activation, and what OPT must be. */
static void read_architecture(reader *r, qs_config *c) {
    /* Hugging Face defaults where the key is optional. */
    c->layer_norm_eps = c->arch == QS_ARCH_BERT ? 1e-12f : 1e-5f;
    c->type_vocab_size = c->arch == QS_ARCH_BERT ? 2 : 0;
    c->activation = c->arch == QS_ARCH_BERT ? QS_ACT_GELU : QS_ACT_RELU;
    c->max_positions = c->arch == QS_ARCH_BERT ? 512 : 2048;

    get_int(r, "vocab_size", &c->vocab_size, 1, 1 << 22);
    get_int(r, "hidden_size", &c->hidden_size, 1, 1 << 16);
    get_int(r, "num_hidden_layers", &c->n_layers, 1, 1024);
    get_int(r, "num_attention_heads", &c->n_heads, 1, 1024);
    get_int(r, c->arch == QS_ARCH_BERT ? "intermediate_size" : "ffn_dim", &c->intermediate_size,
            1, 1 << 18);
    get_int(r, "max_position_embeddings", &c->max_positions, 1, 1 << 16);
    get_float(r, "layer_norm_eps", &c->layer_norm_eps);
    static const char *const acts[] = {"gelu", "gelu_new", "relu", NULL};
    int act = (int)c->activation;
    if (c->arch == QS_ARCH_BERT) {
        get_int(r, "type_vocab_size", &c->type_vocab_size, 1, 1024);
        get_enum(r, "hidden_act", acts, &act);
        static const char *const pos[] = {"absolute", NULL};
        int p = 0;
        get_enum(r, "position_embedding_type", pos, &p);
    } else {
        get_enum(r, "activation_function", acts, &act);
        require_value(r, "do_layer_norm_before", 1, "only pre-LN OPT (OPT-350m is post-LN)");
        require_value(r, "enable_bias", 1, "linear layers must have biases");
        require_value(r, "layer_norm_elementwise_affine", 1, "LayerNorm must be affine");
        require_value(r, "_remove_final_layer_norm", 0, "the final LayerNorm must exist");
        int proj = c->hidden_size;
        get_int(r, "word_embed_proj_dim", &proj, 1, 1 << 16);
        if (!r->status && proj != c->hidden_size)
            r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: word_embed_proj_dim %d != hidden_size "
                                "%d (projected embeddings are not supported)", r->what, proj,
                                c->hidden_size);
    }
    require_value(r, "tie_word_embeddings", 1, "the output head must be tied to the embeddings");
    c->activation = (qs_activation)act;
}

/* quantscope's keys: the attention variant, the block, the tokenizer.
 * *all_features: attn_gate_linear_all_features was set (checked later). */
static void read_variant(reader *r, qs_config *c, int *all_features) {
    c->clip_zeta = 1.0f;
    c->gate_init = 0.5f;
    c->tokenizer = c->arch == QS_ARCH_BERT ? QS_TOKENIZER_WORDPIECE : QS_TOKENIZER_NONE;
    c->do_lower_case = 1;
    c->op_beta = 0.2f;
    int sm = 0, gate = 0, tok = (int)c->tokenizer;
    get_enum(r, "attn_softmax", softmax_names, &sm);
    get_float(r, "clip_gamma", &c->clip_gamma);
    get_float(r, "clip_zeta", &c->clip_zeta);
    get_float(r, "clip_alpha", &c->clip_alpha);
    c->clip_seq_len = c->max_positions;
    get_int(r, "clip_seq_len", &c->clip_seq_len, 1, 1 << 16);
    const qs_json *gt = qs_json_get(r->root, "attn_gate_type");
    if (!r->status && gt && gt->type == QS_JSON_STRING && !strcmp(gt->string, "conditional_per_head")) {
        r->status = qs_fail(r->err, QS_ERR_CONFIG, "%s: attn_gate_type \"conditional_per_head\" "
                            "(one gate per sequence from tokens pooled over the sequence, which "
                            "leaks future tokens in causal models) is not supported; use "
                            "\"conditional_per_token\"", r->what);
        return;
    }
    get_enum(r, "attn_gate_type", gate_names, &gate);
    get_bool(r, "attn_gate_mlp", &c->gate_mlp);
    get_bool(r, "attn_gate_linear_all_features", all_features);
    get_int(r, "attn_gate_mlp_hidden", &c->gate_mlp_hidden, 1, 1 << 16);
    get_float(r, "attn_gate_init", &c->gate_init);
    get_enum(r, "tokenizer", tokenizer_names, &tok);
    get_bool(r, "do_lower_case", &c->do_lower_case);
    int block = 0;
    get_enum(r, "block_type", block_names, &block);
    c->block = (qs_block_type)block;
    get_float(r, "op_beta", &c->op_beta);
    c->softmax = (qs_softmax_type)sm;
    c->gate = (qs_gate_type)gate;
    if (*all_features && c->gate == QS_GATE_CONDITIONAL_PER_TOKEN) c->gate = QS_GATE_ALL_FEATURES;
    c->tokenizer = (qs_tokenizer_kind)tok;
}

/* Required sizes present, values in range and consistent with each other;
 * the gate MLP's default width. The first problem is reported. */
static void check_config(reader *r, qs_config *c, int all_features) {
    const char *what = r->what;
    qs_error *err = r->err;
    const char *required[] = {"vocab_size", "hidden_size", "num_hidden_layers",
                              "num_attention_heads",
                              c->arch == QS_ARCH_BERT ? "intermediate_size" : "ffn_dim"};
    for (int i = 0; i < 5; i++)
        if (!qs_json_get(r->root, required[i])) {
            r->status = qs_fail(err, QS_ERR_CONFIG, "%s: missing key '%s'", what, required[i]);
            return;
        }
    if (c->hidden_size % c->n_heads)
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: hidden_size %d is not divisible by "
                            "num_attention_heads %d", what, c->hidden_size, c->n_heads);
    else if (!(c->clip_gamma <= 0.0f) || !(c->clip_zeta >= 1.0f) || !(c->clip_alpha >= 0.0f))
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: clipped softmax needs clip_gamma <= 0, "
                            "clip_zeta >= 1, clip_alpha >= 0 (got %g, %g, %g)", what,
                            c->clip_gamma, c->clip_zeta, c->clip_alpha);
    else if (!(c->gate_init > 0.0f && c->gate_init < 1.0f))
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: attn_gate_init = %g, expected a probability "
                            "in (0, 1)", what, c->gate_init);
    else if ((c->gate_mlp || all_features) && c->gate != QS_GATE_CONDITIONAL_PER_TOKEN &&
             c->gate != QS_GATE_ALL_FEATURES)
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: attn_gate_mlp and "
                            "attn_gate_linear_all_features need attn_gate_type "
                            "\"conditional_per_token\"", what);
    else if (c->gate_mlp && all_features)
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: attn_gate_mlp and "
                            "attn_gate_linear_all_features exclude each other", what);
    else if (!(c->op_beta > 0.0f && c->op_beta <= 10.0f))
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: op_beta = %g, expected a gain in (0, 10]", what,
                            c->op_beta);
    else if (!(c->layer_norm_eps > 0.0f))
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: layer_norm_eps must be > 0", what);
    else if (c->tokenizer == QS_TOKENIZER_BYTE && c->vocab_size < QS_BYTE_VOCAB_SIZE_MIN)
        r->status = qs_fail(err, QS_ERR_CONFIG, "%s: tokenizer \"byte\" needs vocab_size >= %d, "
                            "got %d", what, QS_BYTE_VOCAB_SIZE_MIN, c->vocab_size);
    if (!r->status && !qs_json_get(r->root, "attn_gate_mlp_hidden")) {
        c->gate_mlp_hidden = c->hidden_size / c->n_heads / 4;
        if (c->gate_mlp_hidden < 1) c->gate_mlp_hidden = 1;
    }
}

qs_status qs_config_parse(const char *text, size_t len, const char *what, qs_config *c,
                          qs_error *err) {
    qs_json *root;
    qs_status s = qs_json_parse(text, len, what, &root, err);
    if (s) return s;
    reader r = {root, what, err, QS_OK};
    memset(c, 0, sizeof *c);
    int all_features = 0;
    read_model_type(&r, c);
    if (!r.status) read_architecture(&r, c);
    if (!r.status) read_variant(&r, c, &all_features);
    if (!r.status) check_config(&r, c, all_features);
    qs_json_free(root);
    return r.status;
}

/* Writes the config as JSON (HF keys + quantscope keys) into buf. */
int qs_config_to_json(const qs_config *c, char *buf, size_t cap) {
    static const char *const act_names[] = {"gelu", "gelu_new", "relu"};
    int n;
    if (c->arch == QS_ARCH_BERT)
        n = snprintf(buf, cap,
                     "{\n  \"model_type\": \"bert\",\n  \"architectures\": [\"BertForMaskedLM\"],\n"
                     "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
                     "  \"num_attention_heads\": %d,\n  \"intermediate_size\": %d,\n"
                     "  \"max_position_embeddings\": %d,\n  \"type_vocab_size\": %d,\n"
                     "  \"layer_norm_eps\": %.9g,\n  \"hidden_act\": \"%s\",\n",
                     c->vocab_size, c->hidden_size, c->n_layers, c->n_heads, c->intermediate_size,
                     c->max_positions, c->type_vocab_size, c->layer_norm_eps,
                     act_names[c->activation]);
    else
        n = snprintf(buf, cap,
                     "{\n  \"model_type\": \"opt\",\n  \"architectures\": [\"OPTForCausalLM\"],\n"
                     "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
                     "  \"num_attention_heads\": %d,\n  \"ffn_dim\": %d,\n"
                     "  \"max_position_embeddings\": %d,\n  \"do_layer_norm_before\": true,\n"
                     "  \"word_embed_proj_dim\": %d,\n  \"activation_function\": \"%s\",\n"
                     "  \"layer_norm_eps\": %.9g,\n",
                     c->vocab_size, c->hidden_size, c->n_layers, c->n_heads, c->intermediate_size,
                     c->max_positions, c->hidden_size, act_names[c->activation], c->layer_norm_eps);
    if (n < 0 || (size_t)n >= cap) return -1;
    int m = snprintf(buf + n, cap - (size_t)n,
                     "  \"tie_word_embeddings\": true,\n  \"attn_softmax\": \"%s\",\n"
                     "  \"clip_gamma\": %.9g,\n  \"clip_zeta\": %.9g,\n  \"clip_alpha\": %.9g,\n"
                     "  \"clip_seq_len\": %d,\n"
                     "  \"attn_gate_type\": \"%s\",\n  \"attn_gate_mlp\": %s,\n"
                     "  \"attn_gate_linear_all_features\": %s,\n"
                     "  \"attn_gate_mlp_hidden\": %d,\n  \"attn_gate_init\": %.9g,\n"
                     "  \"block_type\": \"%s\",\n  \"op_beta\": %.9g,\n"
                     "  \"tokenizer\": \"%s\",\n  \"do_lower_case\": %s\n}\n",
                     softmax_names[c->softmax], c->clip_gamma, c->clip_zeta, c->clip_alpha,
                     c->clip_seq_len,
                     gate_names[c->gate == QS_GATE_ALL_FEATURES ? QS_GATE_CONDITIONAL_PER_TOKEN : c->gate],
                     c->gate_mlp ? "true" : "false",
                     c->gate == QS_GATE_ALL_FEATURES ? "true" : "false", c->gate_mlp_hidden,
                     c->gate_init, block_names[c->block], c->op_beta, tokenizer_names[c->tokenizer],
                     c->do_lower_case ? "true" : "false");
    if (m < 0 || (size_t)(n + m) >= cap) return -1;
    return n + m;
}
