/* tests/fuzz/fuzz_resume.c: libFuzzer target for checkpoint resume: the input is
 * written as train_state.safetensors and resumed by a tiny trainer, then stepped. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "model/model_internal.h"

static char dir[64];
static char path[96];

static void cleanup(void) {
    remove(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* One folder per process, so parallel fuzzing jobs do not share files;
     * on tmpfs when there is one, so the file rewritten per input never
     * reaches a disk (ext4 flushes a truncated file on close: 10x slower). */
    struct stat sb;
    snprintf(dir, sizeof dir, "%s/qs-fuzz-resume-XXXXXX",
             stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir)) abort();
    snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
    atexit(cleanup);
    return 0;
}

/* The model and trainer every input starts from. A refused state leaves
 * both untouched (checked below), so they are rebuilt only after a resume
 * succeeded: each run still depends on its input alone, as libFuzzer needs,
 * and the common failing runs skip the rebuild. */
static qs_model *m;
static qs_trainer *t;
static float *pristine;

static void rebuild(void) {
    qs_trainer_free(t);
    qs_model_free(m);
    m = fuzz_tiny_model();
    qs_train_config tc = fuzz_train_config();
    qs_error err = {0};
    if (qs_trainer_new(m, &tc, FUZZ_CORPUS, sizeof FUZZ_CORPUS - 1, &t, NULL, &err)) {
        fprintf(stderr, "fuzz_resume: %s\n", err.msg);
        abort();
    }
    if (!pristine) pristine = malloc(m->n_params * sizeof(float));
    if (!pristine) abort();
    memcpy(pristine, m->params, m->n_params * sizeof(float));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
    if (!t) rebuild();
    qs_train_config tc = fuzz_train_config();
    qs_error err = {0};
    qs_status s = qs_trainer_resume(t, dir, &err);
    if (s) {
        fuzz_check_error(s, &err);
        FUZZ_ASSERT(s == QS_ERR_FORMAT || s == QS_ERR_CONFIG || s == QS_ERR_SHAPE ||
                    s == QS_ERR_NAN || s == QS_ERR_NOMEM, "status %d: %s", (int)s, err.msg);
        /* A refused state leaves the trainer as it was. */
        FUZZ_ASSERT(qs_trainer_steps_done(t) == 0, "step changed by a failed resume");
        FUZZ_ASSERT(memcmp(pristine, m->params, m->n_params * sizeof(float)) == 0,
                    "parameters changed by a failed resume");
        return 0;
    }
    int done = qs_trainer_steps_done(t);
    /* A resumed run continues the schedule: its step is one it could reach. */
    FUZZ_ASSERT(done >= 0 && done <= tc.steps, "resumed at step %d of %d", done, tc.steps);
    /* Training on from any accepted state either steps or stops cleanly (the
     * state may hold huge but finite values). */
    for (int k = 0; k < 2 && qs_trainer_steps_done(t) < tc.steps; k++) {
        qs_step_log log;
        s = qs_trainer_step(t, &log, &err);
        if (s) fuzz_check_error(s, &err);
        FUZZ_ASSERT(s == QS_OK || s == QS_ERR_NAN, "step after resume: %s", err.msg);
        if (s) break;
    }
    rebuild();
    return 0;
}
