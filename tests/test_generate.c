// `vlm generate` end to end on tiny synthetic data, plus the Fréchet distance:
// (1) vlm_frechet_distance against a closed form and a PyTorch fixture
//     (tests/reference/make_frechet_fixtures.py);
// (2) a tiny DiT trained on "a white square" / "a black square" images learns
//     the condition: guided samples of the white prompt are brighter;
// (3) a run stopped and resumed writes the same model file, byte for byte, as
//     an uninterrupted run (EMA and AdamW state included);
// (4) sampling is seeded and independent of the batch size;
// (5) `generate eval` prints the JSON fields; bad input is a clear error.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/rng.h"
#include "core/safetensors.h"
#include "data/image.h"
#include "fusion/checkpoint.h"
#include "fusion/generator.h"
#include "eval/frechet.h"
#include "tests/testutil.h"
#include "vision/classifier.h"

#define DIRN "generate_test_data"
#define LOGS "generate_test_logs"

static void test_frechet(void) {
    vlm_error err;
    // Closed form: diagonal covariances commute, FD = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2.
    enum { N = 4000, D = 3 };
    float *a = malloc(sizeof(float) * N * D), *b = malloc(sizeof(float) * N * D);
    vlm_rng r;
    vlm_rng_init(&r, 1, 0, 0);
    const float sa[D] = {1, 2, 0.5f}, sb[D] = {0.5f, 2, 1.5f};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) a[i * D + j] = sa[j] * vlm_rng_normal(&r), b[i * D + j] = 1 + sb[j] * vlm_rng_normal(&r);
    // the sample moments are what FD sees: compute the closed form from them
    double fd, want = 0;
    for (int j = 0; j < D; j++) {
        double ma = 0, mb = 0, va = 0, vb = 0;
        for (int i = 0; i < N; i++) ma += a[i * D + j], mb += b[i * D + j];
        ma /= N, mb /= N;
        for (int i = 0; i < N; i++) va += (a[i * D + j] - ma) * (a[i * D + j] - ma), vb += (b[i * D + j] - mb) * (b[i * D + j] - mb);
        va /= N - 1, vb /= N - 1;
        want += (ma - mb) * (ma - mb) + va + vb - 2 * sqrt(va * vb);
    }
    CHECK(vlm_frechet_distance(a, N, b, N, D, &fd, &err) == VLM_OK, "%s", err.msg);
    // off-diagonal sample covariances are ~1/sqrt(N): the closed form holds to ~1e-2
    CHECK(fabs(fd - want) < 0.03 * want, "FD %.5f vs closed form %.5f", fd, want);
    CHECK(vlm_frechet_distance(a, N, a, N, D, &fd, &err) == VLM_OK && fabs(fd) < 1e-9, "FD(a, a) = %g", fd);
    CHECK(vlm_frechet_distance(a, 1, b, N, D, &fd, &err) != VLM_OK && strstr(err.msg, ">= 2"), "n = 1 accepted");
    free(a), free(b);
    // PyTorch fixture: correlated 24-d sets
    vlm_st_file f;
    if (vlm_st_read(&f, tu_src("tests/fixtures/frechet.safetensors"), &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    const vlm_st_entry *ea = vlm_st_find(&f, "a"), *eb = vlm_st_find(&f, "b"), *ef = vlm_st_find(&f, "fd");
    CHECK(ea && eb && ef, "fixture tensors");
    if (ea && eb && ef) {
        const float *fa = vlm_st_data(&f, ea), *fb = vlm_st_data(&f, eb), *ff = vlm_st_data(&f, ef);
        CHECK(vlm_frechet_distance(fa, 300, fb, 200, 24, &fd, &err) == VLM_OK, "%s", err.msg);
        CHECK(fabs(fd - ff[0]) < 1e-5 * ff[0], "FD %.8g vs torch %.8g", fd, (double)ff[0]);
        printf("  frechet: %.6f (torch %.6f)\n", fd, (double)ff[0]);
    }
    vlm_st_free(&f);
}

// ---------------------------------------------------------------- CLI
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8400];
    snprintf(full, sizeof full, "%s >>" LOGS "/stdout.txt 2>>" LOGS "/stderr.txt", cmd);
    return system(full);
}

static int files_equal(const char *p, const char *q) {
    size_t n1, n2;
    char *a = tu_read_file(p, &n1), *b = tu_read_file(q, &n2);
    int eq = a && b && n1 == n2 && memcmp(a, b, n1) == 0;
    free(a), free(b);
    return eq;
}

// The training states agree in every buffer and the step (elapsed time differs).
static int same_state(const char *p, const char *q) {
    vlm_st_file a, b;
    vlm_error err;
    if (vlm_st_read(&a, p, &err)) return 0;
    if (vlm_st_read(&b, q, &err)) {
        vlm_st_free(&a);
        return 0;
    }
    int eq = vlm_st_meta(&a, "step") && vlm_st_meta(&b, "step") && !strcmp(vlm_st_meta(&a, "step"), vlm_st_meta(&b, "step"));
    const char *names[4] = {"params", "adamw.m", "adamw.v", "ema"};
    for (int i = 0; i < 4; i++) {
        const vlm_st_entry *x = vlm_st_find(&a, names[i]), *y = vlm_st_find(&b, names[i]);
        eq = eq && x && y && x->numel == y->numel &&
             !memcmp(vlm_st_data(&a, x), vlm_st_data(&b, y), sizeof(float) * (size_t)x->numel);
    }
    vlm_st_free(&a);
    vlm_st_free(&b);
    return eq;
}

// Mean grey level of grid cell (row, col): --no-labels --scale 1 layout (pad 2).
static double cell_mean(const vlm_image *g, int s, int row, int col) {
    int x0 = 2 + col * (s + 2), y0 = 2 + row * (s + 2);
    double m = 0;
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++) m += g->px[((y0 + y) * g->w + x0 + x) * 3];
    return m / (s * s);
}

static void make_data(void) {
    mkdir(DIRN, 0755);
    FILE *f = fopen(DIRN "/train.tsv", "w");
    fprintf(f, "filepath\ttitle\tlabel\n");
    vlm_rng r;
    vlm_rng_init(&r, 7, 0, 0);
    uint8_t px[16 * 16 * 3];
    vlm_error err;
    for (int i = 0; i < 64; i++) {
        int white = i % 2 == 0;
        for (int p = 0; p < 16 * 16; p++) {
            int v = (white ? 215 : 40) + (int)(25 * vlm_rng_normal(&r));
            v = v < 0 ? 0 : v > 255 ? 255 : v;
            px[p * 3] = px[p * 3 + 1] = px[p * 3 + 2] = (uint8_t)v;
        }
        char path[256];
        snprintf(path, sizeof path, DIRN "/%03d.png", i);
        CHECK(vlm_image_write_png(path, px, 16, 16, &err) == VLM_OK, "%s", err.msg);
        fprintf(f, "%03d.png\ta %s square\t%d\n", i, white ? "white" : "black", white ? 0 : 1);
    }
    fclose(f);
    f = fopen(DIRN "/classnames.txt", "w");
    fputs("white square\nblack square\n", f);
    fclose(f);
    f = fopen(DIRN "/captions.tsv", "w"); // the same images, captions only (no labels)
    fprintf(f, "filepath\ttitle\n");
    for (int i = 0; i < 64; i++) fprintf(f, "%03d.png\ta %s square\n", i, i % 2 == 0 ? "white" : "black");
    fclose(f);
}

// The shared tiny OpenAI CLIP + the small test vocabulary as a vlm CLIP file.
static int make_clip(const char *path) {
    vlm_error err;
    vlm_clip m;
    char *vocab;
    if (tu_tiny_clip(&m, &vocab)) return -1;
    int ok = vlm_ckpt_save_model(path, &m, vocab, 0, 0, &err) == VLM_OK;
    CHECK(ok, "save clip: %s", err.msg);
    vlm_clip_free(&m);
    free(vocab);
    return ok ? 0 : -1;
}

// A random 2-class classifier file (only the eval plumbing is tested with it).
static int make_classifier(const char *path) {
    vlm_error err;
    vlm_vit_cfg v = {.image_size = 16, .patch_size = 8, .width = 32, .layers = 1, .heads = 2, .mlp_width = 64,
                     .output_dim = 16, .act = VLM_ACT_GELU};
    vlm_classifier_cfg cfg;
    vlm_classifier_cfg_from_vit(&cfg, &v, 2);
    vlm_classifier m;
    if (vlm_classifier_init(&m, &cfg, &err)) {
        CHECK(0, "classifier: %s", err.msg);
        return -1;
    }
    vlm_classifier_init_weights(&m, 3);
    int ok = vlm_classifier_save(path, &m, "white square\nblack square", 0, &err) == VLM_OK;
    CHECK(ok, "save classifier: %s", err.msg);
    vlm_classifier_free(&m);
    return ok ? 0 : -1;
}

static void last_json(char *out, size_t n) {
    FILE *f = fopen(LOGS "/stdout.txt", "r");
    char line[8192];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (line[0] == '{') snprintf(out, n, "%s", line);
    if (f) fclose(f);
}

static double jnum(const char *json, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(json, k);
    return p ? atof(p + strlen(k)) : NAN;
}

static void test_cli(void) {
    system("rm -rf " LOGS " " DIRN);
    mkdir(LOGS, 0755);
    make_data();
    if (make_clip(LOGS "/clip.safetensors") || make_classifier(LOGS "/clf.safetensors")) return;
    const char *vlm = VLM_BINARY_DIR "/vlm";
    char base[2048];
    snprintf(base, sizeof base,
             "%s generate train --clip " LOGS "/clip.safetensors --train-data " DIRN "/train.tsv --classnames " DIRN
             "/classnames.txt --template 'a {}' --image-size 8 --patch-size 2 --width 32 --heads 2 --layers 2 --batch-size 16 --lr 2e-3 "
             "--warmup 10 --ema-decay 0.9 --log-every 10 --grid-n 2 --logs " LOGS,
             vlm);
    // (2) learning: 300 steps, then guided samples of both prompts
    CHECK(sh("%s --max-steps 300 --name learn", base) == 0, "generate train failed (see " LOGS "/stderr.txt)");
    char js[8192];
    last_json(js, sizeof js);
    CHECK(jnum(js, "steps") == 300 && jnum(js, "loss") < 0.5, "train JSON: %s", js);
    const char *model = LOGS "/learn/checkpoints/epoch_latest.safetensors";
    CHECK(sh("%s generate sample --checkpoint %s --prompt 'a white square' --prompt 'a black square' --n 4 --steps 25 "
             "--guidance 2 --seed 5 --scale 1 --no-labels --out " LOGS "/g1.png",
             vlm, model) == 0,
          "generate sample failed");
    vlm_image img;
    vlm_image_init(&img);
    vlm_error err;
    if (vlm_image_load(&img, LOGS "/g1.png", NULL, &err) == VLM_OK) {
        CHECK(img.w == 2 + 4 * 10 && img.h == 2 + 2 * 10, "grid size %dx%d", img.w, img.h);
        double w = 0, b = 0;
        for (int k = 0; k < 4; k++) w += cell_mean(&img, 8, 0, k) / 4, b += cell_mean(&img, 8, 1, k) / 4;
        printf("  generate: mean grey of 'white' samples %.1f, 'black' samples %.1f (data: 215 / 40)\n", w, b);
        CHECK(w > b + 80, "the condition is not learned: white %.1f, black %.1f", w, b);
    } else
        CHECK(0, "%s", err.msg);
    // the class-name prompts through the training template give the same grid
    CHECK(sh("%s generate sample --checkpoint %s --classnames " DIRN "/classnames.txt --n 4 --steps 25 --guidance 2 "
             "--seed 5 --scale 1 --no-labels --out " LOGS "/g2.png",
             vlm, model) == 0 && files_equal(LOGS "/g1.png", LOGS "/g2.png"),
          "--classnames + training template differs from the literal prompts");
    // (4) seeded, batch-size independent; another seed differs
    CHECK(sh("%s generate sample --checkpoint %s --prompt 'a white square' --prompt 'a black square' --n 4 --steps 25 "
             "--guidance 2 --seed 5 --scale 1 --no-labels --batch-size 3 --out " LOGS "/g3.png",
             vlm, model) == 0 && files_equal(LOGS "/g1.png", LOGS "/g3.png"),
          "samples depend on the batch size");
    CHECK(sh("%s generate sample --checkpoint %s --prompt 'a white square' --prompt 'a black square' --n 4 --steps 25 "
             "--guidance 2 --seed 6 --scale 1 --no-labels --out " LOGS "/g4.png",
             vlm, model) == 0 && !files_equal(LOGS "/g1.png", LOGS "/g4.png"),
          "another seed gives the same samples");
    // guidance interval: (0, inf] guides every step (= g1); an interval above every step's sigma guides none
    // (= --guidance 1, conditional only); a middle interval is neither
    const char *two = "--prompt 'a white square' --prompt 'a black square' --n 4 --steps 25 --seed 5 --scale 1 --no-labels";
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 2 --guidance-interval 0,inf --out " LOGS "/gi1.png", vlm,
             model, two) == 0 && files_equal(LOGS "/g1.png", LOGS "/gi1.png"),
          "--guidance-interval 0,inf differs from plain guidance");
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 2 --guidance-interval 1e6,inf --out " LOGS "/gi2.png", vlm,
             model, two) == 0 &&
              sh("%s generate sample --checkpoint %s %s --guidance 1 --out " LOGS "/gi3.png", vlm, model, two) == 0 &&
              files_equal(LOGS "/gi2.png", LOGS "/gi3.png") && !files_equal(LOGS "/g1.png", LOGS "/gi3.png"),
          "a guidance interval no step falls in differs from conditional-only sampling");
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 2 --guidance-interval 0.3,3 --out " LOGS "/gi4.png", vlm,
             model, two) == 0 &&
              !files_equal(LOGS "/gi4.png", LOGS "/g1.png") && !files_equal(LOGS "/gi4.png", LOGS "/gi3.png"),
          "a middle guidance interval equals full or no guidance");
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance-interval 3,1 --out " LOGS "/gi5.png", vlm, model, two) != 0 &&
              sh("%s generate sample --checkpoint %s %s --guidance-interval 1 --out " LOGS "/gi5.png", vlm, model, two) != 0,
          "a bad --guidance-interval was accepted");
    CHECK(sh("%s generate sample --checkpoint %s --prompt 'a white square' --n 2 --steps 10 --sampler ddpm --out " LOGS
             "/g5.png",
             vlm, model) == 0,
          "ddpm sampler failed");
    // (5) eval: JSON fields, sane values
    // (no --real-data: the training data recorded in the model file)
    CHECK(sh("%s generate eval --checkpoint %s --classifier " LOGS "/clf.safetensors --classnames " DIRN
             "/classnames.txt --n-per-class 8 --steps 10 --json",
             vlm, model) == 0,
          "generate eval failed");
    last_json(js, sizeof js);
    double acc = jnum(js, "cond_accuracy"), fd = jnum(js, "fd"), rr = jnum(js, "fd_real_real");
    CHECK(acc >= 0 && acc <= 1 && fd >= 0 && rr >= 0 && jnum(js, "n") == 16, "eval JSON: %s", js);
    // the mean term is a part of fd (the covariance term is a squared Bures distance, >= 0); per-class distances
    double fm = jnum(js, "fd_mean");
    const char *fc = strstr(js, "\"fd_class\": ["), *fcr = strstr(js, "\"fd_class_real_real\": [");
    CHECK(fm >= 0 && fm <= fd + 1e-9 && fc && fcr && atof(fc + 13) > 0 && atof(fcr + 23) > 0,
          "eval JSON: fd_mean / fd_class: %s", js);
    // (3) resume: 20 steps straight vs 10 + resume to 20 -> identical model files
    CHECK(sh("%s --max-steps 20 --grid-n 0 --log-every 1 --name straight", base) == 0, "straight run failed");
    CHECK(sh("%s --max-steps 10 --grid-n 0 --log-every 1 --name resumed", base) == 0 &&
              sh("%s --max-steps 20 --grid-n 0 --log-every 1 --name resumed --resume latest", base) == 0,
          "stop/resume runs failed");
    // a resume that retrained from step 1 would also end at identical files: the log must show
    // steps 1..10 from the first process and 11..20 from the second, each once
    CHECK(tu_state_step(LOGS, "resumed") == 20, "resumed run's state at step %lld", tu_state_step(LOGS, "resumed"));
    tu_check_steps(LOGS, "resumed", 10, 20);
    CHECK(files_equal(LOGS "/straight/checkpoints/epoch_latest.safetensors", LOGS "/resumed/checkpoints/epoch_latest.safetensors"),
          "resumed run's model differs from the uninterrupted run's");
    CHECK(same_state(LOGS "/straight/checkpoints/epoch_latest.state.safetensors",
                     LOGS "/resumed/checkpoints/epoch_latest.state.safetensors"),
          "resumed run's state (params, moments, EMA, step) differs from the uninterrupted run's");
    // guidance rescale: 0 = plain guidance (g1); 0.7 changes the guided samples; outside [0, 1] refused
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 2 --guidance-rescale 0 --out " LOGS "/gr1.png", vlm,
             model, two) == 0 && files_equal(LOGS "/gr1.png", LOGS "/g1.png"),
          "--guidance-rescale 0 changed the samples");
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 2 --guidance-rescale 0.7 --out " LOGS "/gr2.png", vlm,
             model, two) == 0 && !files_equal(LOGS "/gr2.png", LOGS "/g1.png"),
          "--guidance-rescale 0.7 left the samples unchanged");
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance-rescale 1.5 --out " LOGS "/gr3.png", vlm, model, two) != 0,
          "--guidance-rescale 1.5 was accepted");
    // autoguidance: the model as its own guide adds (a - 1) * 0 (= conditional-only gi3); a weaker guide
    // (the 20-step model) at a = 1 changes nothing, at a = 2 changes the samples; --autoguidance needs
    // --guide; a guide of another image size is refused
    const char *weak = LOGS "/straight/checkpoints/epoch_latest.safetensors";
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 1 --guide %s --autoguidance 2 --out " LOGS "/ag1.png",
             vlm, model, two, model) == 0 && files_equal(LOGS "/ag1.png", LOGS "/gi3.png"),
          "autoguidance by the model itself changed the samples");
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 1 --guide %s --autoguidance 1 --out " LOGS "/ag2.png",
             vlm, model, two, weak) == 0 && files_equal(LOGS "/ag2.png", LOGS "/gi3.png"),
          "autoguidance 1 changed the samples");
    CHECK(sh("%s generate sample --checkpoint %s %s --guidance 1 --guide %s --autoguidance 2 --out " LOGS "/ag3.png",
             vlm, model, two, weak) == 0 && !files_equal(LOGS "/ag3.png", LOGS "/gi3.png"),
          "autoguidance 2 by a weaker guide left the samples unchanged");
    CHECK(sh("%s generate sample --checkpoint %s %s --autoguidance 2 --out " LOGS "/ag4.png", vlm, model, two) != 0,
          "--autoguidance without --guide was accepted");
    CHECK(sh("%s --max-steps 1 --grid-n 0 --image-size 16 --name big", base) == 0 &&
              sh("%s generate sample --checkpoint %s %s --guide " LOGS "/big/checkpoints/epoch_latest.safetensors "
                 "--autoguidance 2 --out " LOGS "/ag5.png", vlm, model, two) != 0,
          "a guide of another image size was accepted");
    CHECK(sh("%s generate eval --checkpoint %s --classifier " LOGS "/clf.safetensors --classnames " DIRN
             "/classnames.txt --n-per-class 8 --steps 10 --guide %s --autoguidance 2 --json",
             vlm, model, weak) == 0,
          "generate eval with autoguidance failed");
    last_json(js, sizeof js);
    CHECK(jnum(js, "autoguidance") == 2 && jnum(js, "n") == 16, "eval JSON with autoguidance: %s", js);
    // --long-skip: the model file records it and sampling rebuilds the same DiT (its skips.* tensors load)
    CHECK(sh("%s --max-steps 2 --grid-n 0 --long-skip --name skip", base) == 0 &&
              sh("%s generate sample --checkpoint " LOGS "/skip/checkpoints/epoch_latest.safetensors %s --out " LOGS
                 "/skip.png", vlm, two) == 0,
          "a --long-skip generator failed to train or sample");
    // --resume latest with no saved state: refused, naming the missing file (not a fresh run)
    CHECK(sh("%s --max-steps 2 --grid-n 0 --name nostate --resume latest", base) != 0, "--resume without a state was accepted");
    {
        char *log = tu_read_file(LOGS "/stderr.txt", NULL);
        CHECK(log && strstr(log, "--resume: no training state at " LOGS "/nostate/checkpoints/epoch_latest.state.safetensors"),
              "--resume without a state: no clear error");
        free(log);
    }
    // captions without labels: the caption is the condition
    CHECK(sh("%s generate train --clip " LOGS "/clip.safetensors --train-data " DIRN "/captions.tsv --image-size 8 "
             "--patch-size 2 --width 32 --heads 2 --layers 1 --batch-size 8 --max-steps 3 --grid-n 0 --cond-tokens 2 "
             "--schedule cosine --min-snr 5 --logs " LOGS " --name captions",
             vlm) == 0,
          "caption-conditioned run (cond tokens, cosine, min-SNR) failed");
    CHECK(sh("%s generate train --clip " LOGS "/clip.safetensors --train-data " DIRN "/train.tsv --image-size 8 "
             "--patch-size 2 --width 32 --heads 2 --layers 1 --batch-size 8 --max-steps 3 --grid-n 0 --cond image "
             "--logs " LOGS " --name imagecond",
             vlm) == 0 &&
              sh("%s generate sample --checkpoint " LOGS "/imagecond/checkpoints/epoch_latest.safetensors --image " DIRN
                 "/000.png --n 2 --steps 5 --out " LOGS "/g6.png",
                 vlm) == 0,
          "image-conditioned train/sample failed");
    // --min-snr: the same draws (seed, data, t, eps) and initial weights, so step 1's loss is the plain
    // MSE with per-sample weights min(SNR_t, 5) / SNR_t <= 1; some of 32 draws have SNR_t > 5 (t < ~130)
    double plain = NAN, weighted = NAN;
    for (int k = 0; k < 2; k++) {
        CHECK(sh("%s generate train --clip " LOGS "/clip.safetensors --train-data " DIRN "/train.tsv --image-size 8 "
                 "--patch-size 2 --width 32 --heads 2 --layers 1 --batch-size 32 --max-steps 1 --grid-n 0 --min-snr %d "
                 "--logs " LOGS " --name minsnr%d",
                 vlm, k ? 5 : 0, k) == 0,
              "--min-snr %d run failed", k ? 5 : 0);
        last_json(js, sizeof js);
        *(k ? &weighted : &plain) = jnum(js, "loss");
    }
    printf("  generate: step-1 loss plain %.5f, min-SNR-5 weighted %.5f\n", plain, weighted);
    CHECK(weighted > 0.05 * plain && weighted < 0.999 * plain, "min-SNR loss %.5f vs plain %.5f", weighted, plain);
    // --t-sampling importance: the zero-initialised output layer predicts eps = 0, so step 1's loss is
    // mean(w) mean(eps^2) = 0.824 x the plain loss (cosine, gamma 5) whatever t each sample drew
    for (int k = 0; k < 2; k++) {
        CHECK(sh("%s generate train --clip " LOGS "/clip.safetensors --train-data " DIRN "/train.tsv --image-size 8 "
                 "--patch-size 2 --width 32 --heads 2 --layers 1 --batch-size 32 --max-steps 1 --grid-n 0 --min-snr 5 "
                 "--schedule cosine --t-sampling %s --logs " LOGS " --name tsamp%d",
                 vlm, k ? "importance" : "stratified", k) == 0,
              "--t-sampling %s run failed", k ? "importance" : "stratified");
        last_json(js, sizeof js);
        double l = jnum(js, "loss");
        printf("  generate: step-1 loss --t-sampling %s %.5f\n", k ? "importance" : "stratified", l);
        if (k) CHECK(fabs(l / plain - 0.824) < 0.08, "importance-sampled loss %.5f vs plain %.5f (want ~0.824x)", l, plain);
        else CHECK(l > 0.05 * plain && l < 0.999 * plain, "stratified min-SNR loss %.5f vs plain %.5f", l, plain);
    }
    {
        size_t n = 0; // the safetensors header (after its 8-byte length) holds the run's args as an escaped JSON string
        const char *pat = "t_sampling\\\": \\\"importance";
        char *state = tu_read_file(LOGS "/tsamp1/checkpoints/epoch_latest.state.safetensors", &n);
        CHECK(state && n > 8 && memmem(state + 8, n - 8, pat, strlen(pat)),
              "the run's args do not record --t-sampling");
        free(state);
    }
    CHECK(sh("%s generate train --clip " LOGS "/clip.safetensors --train-data " DIRN "/train.tsv --t-sampling lognormal",
             vlm) != 0, "--t-sampling lognormal accepted");
    // bad input: clear errors, non-zero exit
    CHECK(sh("%s generate train --clip " LOGS "/clip.safetensors --train-data " DIRN "/train.tsv --patch-size 3", vlm) != 0,
          "image size 32 / patch 3 accepted");
    CHECK(sh("%s generate sample --checkpoint " LOGS "/clf.safetensors --prompt x", vlm) != 0, "classifier file accepted as generator");
    CHECK(sh("%s generate sample --checkpoint %s", vlm, model) != 0, "sample without prompts accepted");
    CHECK(sh("%s generate sample --checkpoint %s --prompt x --steps 5000", vlm, model) != 0, "5000 steps (T = 1000) accepted");
    CHECK(sh("%s generate eval --checkpoint %s --classifier " LOGS "/clf.safetensors --classnames " DIRN
             "/classnames.txt --real-data " DIRN "/train.tsv --n-per-class 20",
             vlm, model) != 0,
          "eval with too few real images per class accepted");
    CHECK(sh("%s generate frobnicate", vlm) != 0, "unknown subcommand accepted");
    // an MPI launcher's environment without an MPI build: a clear refusal, not W identical runs
    {
        char *before = tu_read_file(LOGS "/stderr.txt", NULL);
        size_t off = before ? strlen(before) : 0;
        free(before);
        CHECK(sh("OMPI_COMM_WORLD_SIZE=2 %s generate train --help", vlm) != 0, "an mpirun launch of an MPI-free build ran");
        char *after = tu_read_file(LOGS "/stderr.txt", NULL);
        CHECK(after && strlen(after) > off && strstr(after + off, "built without MPI") &&
                  strstr(after + off, "-DVLM_MPI=ON"),
              "no refusal message naming the MPI build: %s", after && strlen(after) > off ? after + off : "(none)");
        free(after);
    }
    char *log = tu_read_file(LOGS "/stderr.txt", NULL);
    CHECK(log && strstr(log, "not a vlm diffusion model file") && strstr(log, "fewer than 2 x 20") &&
              strstr(log, "not a multiple of patch size 3") && strstr(log, "steps 5000") &&
              strstr(log, "--t-sampling: expected uniform, stratified or importance, got 'lognormal'"),
          "error messages missing from " LOGS "/stderr.txt");
    free(log);
    vlm_image_free(&img);
}

int main(void) {
    test_frechet();
    test_cli();
    return tu_done("test_generate");
}
