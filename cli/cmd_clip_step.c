// `vlm clip-step`: the reference harness. One forward/backward of CLIP on a
// given batch (and optionally K AdamW steps), writing features, logits, loss
// and every gradient by OpenAI parameter name.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/optim.h"
#include "core/safetensors.h"
#include "fusion/checkpoint.h"
#include "fusion/clip.h"
#include "train/clip_step.h"

static const char *usage =
    "usage: vlm clip-step [--config CONFIG.json] --weights W --inputs IO.safetensors\n"
    "                     --out OUT.safetensors [--adamw-steps K]\n"
    "CONFIG uses OpenAI CLIP(...) argument names (or open_clip's schema); without it, W carries the config (a vlm model\n"
    "file) or it is inferred from the weights (any format vlm convert reads). Reads `image` [B,3,S,S] F32 and\n"
    "`text` [B,T] I32 from the inputs; writes image_features, text_features (before normalisation),\n"
    "logits_per_image, loss and grad.<param> for every parameter; with --adamw-steps K also adamw_losses\n"
    "(the loss before each of K AdamW steps and after the last; lr 1e-3, betas (0.9, 0.98), eps 1e-6,\n"
    "wd 0.2 with open_clip's no-decay rule, logit_scale clamped to [0, ln 100]; settable in CONFIG's \"adamw\").\n";

int cmd_clip_step(int argc, char **argv) {
    const char *config = NULL, *weights = NULL, *inputs = NULL, *out = NULL;
    long long steps = 0;
    vlm_error err = {0};
    const cli_opt own[] = {
        {"config", CLI_STR, &config, 0, 0, NULL, NULL},
        {"weights", CLI_STR, &weights, 0, 0, NULL, NULL},
        {"inputs", CLI_STR, &inputs, 0, 0, NULL, NULL},
        {"out", CLI_STR, &out, 0, 0, NULL, NULL},
        {"adamw-steps", CLI_INT, &steps, 0, 100000, NULL, NULL},
        CLI_END,
    };
    const cli_opt *tabs[] = {own};
    int pr = cli_parse_flags("clip-step", argc, argv, tabs, 1, &err);
    if (pr) return cli_parse_exit(pr, "clip-step", usage, &err);
    if (!weights || !inputs || !out)
        return cli_usagef("clip-step", "--weights, --inputs and --out are required (see vlm clip-step --help)");
    const int adamw_steps = (int)steps;
    vlm_clip m;
    if (!config) { // the weights carry their config (a vlm model file) or it is inferred (fusion/import.h)
        if (vlm_ckpt_load_model(weights, &m, NULL, &err)) return cli_fail("clip-step", &err);
    } else {
        vlm_clip_cfg cfg;
        if (vlm_clip_cfg_load(config, &cfg, &err) || vlm_clip_init(&m, &cfg, &err)) return cli_fail("clip-step", &err);
        if (vlm_clip_load_weights(&m, weights, &err)) {
            vlm_clip_free(&m);
            return cli_fail("clip-step", &err);
        }
    }
    vlm_adamw_cfg ac = {1e-3f, 0.9f, 0.98f, 1e-6f, 0.2f};
    json_t *root = config ? json_load_file(config, 0, NULL) : NULL;
    json_t *ja = root ? json_object_get(root, "adamw") : NULL;
    if (json_is_object(ja)) {
        json_t *b = json_object_get(ja, "betas");
        if (json_is_number(json_object_get(ja, "lr"))) ac.lr = (float)json_number_value(json_object_get(ja, "lr"));
        if (json_is_number(json_object_get(ja, "eps"))) ac.eps = (float)json_number_value(json_object_get(ja, "eps"));
        if (json_is_number(json_object_get(ja, "weight_decay")))
            ac.weight_decay = (float)json_number_value(json_object_get(ja, "weight_decay"));
        if (json_is_array(b) && json_array_size(b) == 2) {
            ac.beta1 = (float)json_number_value(json_array_get(b, 0));
            ac.beta2 = (float)json_number_value(json_array_get(b, 1));
        }
    }
    json_decref(root);

    int rc = 1;
    vlm_st_file io = {0};
    vlm_clip_step_result r = {0};
    vlm_st_tensor *outs = NULL;
    char **names = NULL;
    if (vlm_st_read(&io, inputs, &err)) goto fail;
    const vlm_st_entry *ei = vlm_st_find(&io, "image"), *et = vlm_st_find(&io, "text");
    if (!ei || !et || ei->dtype != VLM_F32 || ei->ndim != 4 || et->dtype != VLM_I32 || et->ndim != 2 ||
        ei->shape[0] != et->shape[0]) {
        vlm_errorf(&err, VLM_ERR_FORMAT, "%s: needs `image` F32 [B,3,S,S] and `text` I32 [B,T] with the same B", inputs);
        goto fail;
    }
    int64_t ishape[4] = {ei->shape[0], ei->shape[1], ei->shape[2], ei->shape[3]}, tshape[2] = {et->shape[0], et->shape[1]};
    if (vlm_clip_step(&m, vlm_st_data(&io, ei), ishape, vlm_st_data(&io, et), tshape, adamw_steps, ac, &r, &err))
        goto fail;
    int64_t B = r.B, E = r.E, one = 1;
    int n = 4 + m.ps.n + (adamw_steps > 0), k = 0;
    outs = calloc((size_t)n, sizeof *outs);
    names = calloc((size_t)n, sizeof *names);
    int64_t fshape[2] = {B, E}, lshape[2] = {B, B}, ashape[1] = {adamw_steps + 1};
    outs[k++] = (vlm_st_tensor){"image_features", VLM_F32, 2, fshape, r.image_features};
    outs[k++] = (vlm_st_tensor){"text_features", VLM_F32, 2, fshape, r.text_features};
    outs[k++] = (vlm_st_tensor){"logits_per_image", VLM_F32, 2, lshape, r.logits_per_image};
    outs[k++] = (vlm_st_tensor){"loss", VLM_F32, 0, &one, &r.loss};
    for (int i = 0; i < m.ps.n; i++) {
        vlm_param *p = &m.ps.p[i];
        names[i] = malloc(strlen(p->name) + 6);
        sprintf(names[i], "grad.%s", p->name);
        outs[k++] = (vlm_st_tensor){names[i], VLM_F32, p->t.ndim, p->t.shape, r.grads + p->offset};
    }
    if (adamw_steps > 0) outs[k++] = (vlm_st_tensor){"adamw_losses", VLM_F32, 1, ashape, r.adamw_losses};
    const char *mk[1] = {"producer"}, *mv[1] = {"vlm clip-step"};
    if (vlm_st_write(out, outs, k, mk, mv, 1, &err)) goto fail;
    printf("loss %.7f", r.loss);
    if (adamw_steps > 0) {
        printf("  adamw_losses");
        for (int i = 0; i <= adamw_steps; i++) printf(" %.7f", r.adamw_losses[i]);
    }
    printf("\nwrote %s (%d tensors)\n", out, k);
    rc = 0;
fail:
    if (rc) cli_fail("clip-step", &err);
    for (int i = 0; names && i < m.ps.n; i++) free(names[i]);
    free(names);
    free(outs);
    vlm_clip_step_result_free(&r);
    vlm_st_free(&io);
    vlm_clip_free(&m);
    return rc;
}
