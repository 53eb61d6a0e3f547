// AdamW (with open_clip's no-decay groups and grad clipping), SGD with
// momentum and the three LR schedules against PyTorch (tests/fixtures/optim.safetensors,
// from tests/reference/make_optim_fixtures.py).
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/optim.h"
#include "core/safetensors.h"
#include "tests/testutil.h"

static const char *names[4] = {"w", "proj.bias", "ln_1.weight", "logit_scale"};
static const int64_t shapes[4][2] = {{3, 4}, {4, 0}, {4, 0}, {1, 0}};
static const int ndims[4] = {2, 1, 1, 1};

static void load(const vlm_st_file *f, vlm_params *ps, const char *prefix) {
    char key[128];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s%s", prefix, names[i]);
        const vlm_st_entry *e = vlm_st_find(f, key);
        if (e) memcpy(ps->data + ps->p[i].offset, vlm_st_data(f, e), (size_t)(e->end - e->begin));
    }
}

static void load_grad(const vlm_st_file *f, vlm_params *ps, int step) {
    char key[128];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "grad.%d.%s", step, names[i]);
        const vlm_st_entry *e = vlm_st_find(f, key);
        if (e) memcpy(ps->grad + ps->p[i].offset, vlm_st_data(f, e), (size_t)(e->end - e->begin));
    }
}

static double compare(const vlm_st_file *f, vlm_params *ps, const char *tag, int step) {
    double worst = 0;
    char key[128];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%d.%s", tag, step, names[i]);
        const vlm_st_entry *e = vlm_st_find(f, key);
        CHECK(e != NULL, "fixture lacks %s", key);
        if (!e) continue;
        double r = tu_rel_err(ps->data + ps->p[i].offset, vlm_st_data(f, e), ps->p[i].numel, 1e-6);
        if (r > worst) worst = r;
    }
    return worst;
}

static void setup(vlm_params *ps) {
    vlm_params_init(ps);
    vlm_error err;
    for (int i = 0; i < 4; i++) vlm_params_add(ps, names[i], ndims[i], shapes[i], &err);
    vlm_params_alloc(ps, &err);
}

int main(void) {
    vlm_error err = {0};
    vlm_st_file f;
    if (vlm_st_read(&f, tu_src("tests/fixtures/optim.safetensors"), &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    vlm_params ps;
    setup(&ps);
    // open_clip's decay rule.
    CHECK(!ps.p[0].no_decay && ps.p[1].no_decay && ps.p[2].no_decay && ps.p[3].no_decay, "no-decay groups wrong");
    load(&f, &ps, "init.");
    vlm_adamw opt;
    vlm_adamw_init(&opt, &ps, (vlm_adamw_cfg){1e-3f, 0.9f, 0.98f, 1e-6f, 0.2f}, &err);
    for (int k = 0; k < 3; k++) {
        load_grad(&f, &ps, k);
        float norm = vlm_clip_grad_norm(&ps, 1.0f);
        char key[32];
        snprintf(key, sizeof key, "gradnorm.%d", k);
        const vlm_st_entry *e = vlm_st_find(&f, key);
        CHECK(e && fabsf(norm - *(const float *)vlm_st_data(&f, e)) < 1e-5f * norm, "step %d grad norm %g", k, norm);
        vlm_adamw_step(&opt, &ps, 1e-3f);
        double r = compare(&f, &ps, "adamw", k);
        CHECK(r < 1e-6, "adamw step %d: rel err %.3g", k, r);
        printf("adamw step %d: rel err %.2e\n", k, r);
    }
    vlm_params_free(&ps);

    setup(&ps);
    load(&f, &ps, "init.");
    vlm_sgd sgd;
    vlm_sgd_init(&sgd, &ps, 0.1f, 0.9f, 1e-2f, 0, &err);
    for (int k = 0; k < 3; k++) {
        load_grad(&f, &ps, k);
        vlm_sgd_step(&sgd, &ps, 0.1f);
        double r = compare(&f, &ps, "sgd", k);
        CHECK(r < 1e-6, "sgd step %d: rel err %.3g", k, r);
        printf("sgd step %d: rel err %.2e\n", k, r);
    }
    // Frozen parameters are not updated.
    vlm_params_set_frozen(&ps, 0, 1);
    float before = ps.data[0];
    load_grad(&f, &ps, 0);
    vlm_sgd_step(&sgd, &ps, 0.1f);
    CHECK(ps.data[0] == before, "frozen parameter changed");
    vlm_params_free(&ps);

    const struct { const char *key; vlm_sched s; } sch[3] = {
        {"sched.cosine", {VLM_SCHED_COSINE, 0.1f, 5, 30, 0, 1, 0}},
        {"sched.const", {VLM_SCHED_CONST, 0.1f, 5, 30, 0, 1, 0}},
        {"sched.cooldown", {VLM_SCHED_CONST_COOLDOWN, 0.1f, 5, 30, 10, 1, 0}},
    };
    for (int i = 0; i < 3; i++) {
        const vlm_st_entry *e = vlm_st_find(&f, sch[i].key);
        CHECK(e != NULL, "fixture lacks %s", sch[i].key);
        if (!e) continue;
        const float *ref = vlm_st_data(&f, e);
        float got[30];
        for (int s = 0; s < 30; s++) got[s] = vlm_sched_lr(&sch[i].s, s);
        double r = tu_rel_err(got, ref, 30, 1e-6);
        CHECK(r < 1e-5, "%s: rel err %.3g", sch[i].key, r);
    }
    vlm_sched_kind k;
    CHECK(vlm_sched_parse("cosine", &k) == 0 && k == VLM_SCHED_COSINE, "parse cosine");
    CHECK(vlm_sched_parse("bogus", &k) != 0, "bogus schedule accepted");
    vlm_st_free(&f);
    return tu_done("test_optim");
}
