/* tests/c/test_crash.c: crash safety of training checkpoints: `qs train` is
 * SIGKILLed at random moments, mostly inside its saves; after every kill the
 * latest checkpoint must load (model folder and training state), and resuming
 * to the end must give the uninterrupted run's files byte for byte.
 *
 * Bounded: QS_CRASH_TRIALS kills (default 10) within QS_CRASH_SECONDS (default
 * 20); QS_CRASH_SEED replays a run (the seed is printed). Needs the `qs` binary
 * beside the test (ctest sets QS_BIN to that folder). */
#define _GNU_SOURCE /* mkdtemp, usleep, memmem */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "io/safetensors.h"
#include "model/model_internal.h"
#include "quantscope/train.h"

#define STEPS 40

static char qs_path[1024], work[64], data_path[128], ref_dir[128], run_dir[128];
static uint64_t rng_state;

static uint64_t rng(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

/* The training flags; the model is tiny so a save (three fsync'd files)
 * takes most of each step and random kills mostly land inside one. */
static void train_argv(const char *out, int resume, char **argv) {
    static char steps[16];
    snprintf(steps, sizeof steps, "%d", STEPS);
    const char *fixed[] = {qs_path, "train", "--out", out, "--data", data_path, "--arch", "bert",
                           "--layers", "1", "--hidden", "16", "--heads", "2", "--ffn", "32",
                           "--max-pos", "16", "--seq-len", "16", "--batch", "2", "--steps", steps,
                           "--warmup", "2", "--seed", "3", "--threads", "1", "--save-every", "1",
                           "--eval-every", "0", "--log-every", "1"};
    size_t n = sizeof fixed / sizeof fixed[0];
    for (size_t i = 0; i < n; i++) argv[i] = (char *)fixed[i];
    argv[n++] = resume ? "--resume" : NULL;
    argv[n] = NULL;
}

/* The same run as a qs_train_config, so the test can resume the state itself
 * (the fingerprint must match the CLI's: defaults plus these flags). */
static qs_train_config train_config(void) {
    qs_train_config tc = qs_train_config_default();
    tc.steps = STEPS;
    tc.warmup_steps = 2;
    tc.batch_size = 2;
    tc.seq_len = 16;
    tc.seed = 3;
    tc.threads = 1;
    return tc;
}

/* Starts qs train with stdout on a pipe; *out reads its step lines. */
static pid_t spawn(const char *out_dir, int resume, FILE **out) {
    char *argv[48];
    train_argv(out_dir, resume, argv);
    int fd[2];
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2); /* the banner and summary are not needed */
        execv(qs_path, argv);
        _exit(127);
    }
    close(fd[1]);
    *out = fdopen(fd[0], "r");
    return pid;
}

static int file_exists(const char *dir, const char *name) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp") != NULL;
    if (d) closedir(d);
    return n;
}

static char *read_all(const char *path, size_t *len) {
    uint8_t *b = NULL;
    qs_error err = {0};
    if (qs_read_file(path, 1 << 26, &b, len, &err)) return NULL;
    return (char *)b;
}

/* The checkpoint in dir loads through the library: config + weights, and the
 * training state resumed by a trainer of the same run. Returns its step, or
 * -1 when there is no checkpoint yet (killed before the first save ended). */
static int check_checkpoint(const char *dir, const char *text, size_t len) {
    if (!file_exists(dir, "train_state.safetensors")) return -1;
    qs_error err = {0};
    qs_model *m = NULL;
    CHECK_OK(qs_model_load_dir(dir, &m, &err), &err);
    if (!m) return -2;
    qs_train_config tc = train_config();
    qs_trainer *t = NULL;
    int step = -2;
    CHECK_OK(qs_trainer_new(m, &tc, text, len, &t, NULL, &err), &err);
    if (t) {
        CHECK_OK(qs_trainer_resume(t, dir, &err), &err);
        step = qs_trainer_steps_done(t);
        CHECK(step >= 1 && step <= STEPS);
        /* the weights of the state run: one forward must work */
        int32_t ids[4] = {1, 40, 77, 2};
        CHECK_OK(qs_model_forward(m, ids, 4, NULL, &err), &err);
    }
    qs_trainer_free(t);
    qs_model_free(m);
    return step;
}

static int run_to_end(const char *dir, int resume) {
    FILE *out;
    pid_t pid = spawn(dir, resume, &out);
    char line[512];
    while (out && fgets(line, sizeof line, out)) {}
    if (out) fclose(out);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void same_file(const char *a_dir, const char *b_dir, const char *name) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/%s", a_dir, name);
    snprintf(b, sizeof b, "%s/%s", b_dir, name);
    size_t na = 0, nb = 0;
    char *x = read_all(a, &na), *y = read_all(b, &nb);
    CHECK(x && y && na == nb && memcmp(x, y, na) == 0);
    if (!(x && y && na == nb && memcmp(x, y, na) == 0))
        fprintf(stderr, "  %s differs between the uninterrupted and the killed run\n", name);
    free(x);
    free(y);
}

/* A 200 KB corpus: the CLI keeps 5 % for validation in every 20th 16 KiB
 * block, so the text needs 11 blocks or more. */
static char *make_corpus(size_t *len) { return word_corpus(200000, 11, len); }

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    char p[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        remove(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void test_sigkill_during_saves(void) {
    size_t len;
    char *text = make_corpus(&len);
    FILE *f = fopen(data_path, "wb");
    CHECK(f && fwrite(text, 1, len, f) == len && fclose(f) == 0);

    /* The uninterrupted run: the files every killed run must end with. */
    double t0 = now_s();
    CHECK(run_to_end(ref_dir, 0) == 0);
    double ref_s = now_s() - t0, step_s = ref_s / STEPS;

    int trials = env_int("QS_CRASH_TRIALS", 10), seconds = env_int("QS_CRASH_SECONDS", 20);
    int kills = 0, in_save = 0, fresh_starts = 0, last_step = 0, finished = 0;
    double deadline = now_s() + seconds;
    for (int trial = 0; trial < trials && now_s() < deadline && !finished; trial++) {
        int resume = file_exists(run_dir, "train_state.safetensors");
        fresh_starts += !resume;
        int tmp_before = count_tmp_files(run_dir);
        FILE *out;
        pid_t pid = spawn(run_dir, resume, &out);
        CHECK(pid > 0 && out);
        if (pid <= 0 || !out) break;
        /* Let 0..3 steps finish, then kill at a random point of the next step
         * (its log line is printed just before its save starts). */
        int skip = (int)(rng() % 4);
        char line[512];
        for (int i = 0; i <= skip && fgets(line, sizeof line, out);) i++;
        usleep((useconds_t)((double)(rng() % 1000) / 1000.0 * step_s * 1.5e6));
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        fclose(out);
        if (WIFEXITED(st)) {
            finished = WEXITSTATUS(st) == 0; /* it reached the end before the kill */
            CHECK(finished);
            continue;
        }
        kills++;
        in_save += count_tmp_files(run_dir) > tmp_before; /* a save's temporary file was left */
        int step = check_checkpoint(run_dir, text, len);
        CHECK(step != -2);
        /* each state file is replaced as a whole, so its step never goes back */
        if (step >= 0) {
            CHECK(step >= last_step);
            last_step = step;
        }
    }
    double trials_s = now_s() - t0 - ref_s;
    printf("  %d kills (%d left a save's temporary file), %d fresh starts, last saved step %d "
           "of %d; uninterrupted run %.1f s, kill trials %.1f s\n", kills, in_save, fresh_starts,
           last_step, STEPS, ref_s, trials_s);
    CHECK(kills > 0 || finished);

    /* Resume to the end: the same bytes as the run that was never killed. */
    int resume = file_exists(run_dir, "train_state.safetensors");
    CHECK(run_to_end(run_dir, resume) == 0);
    same_file(ref_dir, run_dir, "model.safetensors");
    same_file(ref_dir, run_dir, "train_state.safetensors");
    same_file(ref_dir, run_dir, "config.json");
    printf("  resumed to the end in %.1f s\n", now_s() - t0 - ref_s - trials_s);
    free(text);
}

int main(void) {
    const char *bin = getenv("QS_BIN");
    snprintf(qs_path, sizeof qs_path, "%s/qs", bin ? bin : ".");
    if (access(qs_path, X_OK) != 0) {
        fprintf(stderr, "test_crash: %s not found (ctest sets QS_BIN to the build folder)\n",
                qs_path);
        return 1;
    }
    const char *seed = getenv("QS_CRASH_SEED");
    rng_state = seed && *seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL);
    printf("test_crash: seed %llu (QS_CRASH_SEED to replay)\n", (unsigned long long)rng_state);
    snprintf(work, sizeof work, "/tmp/qs-crash-XXXXXX");
    if (!mkdtemp(work)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data_path, sizeof data_path, "%s/corpus.txt", work);
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", work);
    snprintf(run_dir, sizeof run_dir, "%s/killed", work);
    mkdir(ref_dir, 0755);
    mkdir(run_dir, 0755);
    RUN(test_sigkill_during_saves);
    remove_dir(ref_dir);
    remove_dir(run_dir);
    remove(data_path);
    rmdir(work);
    return TEST_DONE();
}
