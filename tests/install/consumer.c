/* tests/install/consumer.c: a program outside the tree, built against an
 * installed quantscope (scripts/test-install.sh): loads a model folder given
 * on the command line, runs a forward and prints the largest logit. */
#include <stdio.h>

#include <quantscope/quantscope.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: consumer MODEL_DIR\n");
        return 2;
    }
    qs_error err = {0};
    qs_model *m;
    if (qs_model_load_dir(argv[1], &m, &err)) {
        fprintf(stderr, "%s (%s)\n", err.msg, qs_status_name(err.status));
        return 1;
    }
    int32_t ids[] = {2, 15, 77, 120, 5};
    if (qs_model_forward(m, ids, 5, NULL, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        qs_model_free(m);
        return 1;
    }
    const float *logits = qs_model_logits(m);
    int V = qs_model_config(m)->vocab_size;
    float best = logits[0];
    for (int i = 1; i < 5 * V; i++) best = logits[i] > best ? logits[i] : best;
    printf("forward ok: 5 tokens, vocab %d, max logit %.4f\n", V, best);
    qs_model_free(m);
    return 0;
}
