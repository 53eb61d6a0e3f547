// A detector's COCO evaluation on a split (see detect_eval.h).
#include "eval/detect_eval.h"
#include "core/clock.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


void vlm_det_split_free(vlm_det_split *d) {
    if (d->loaded) {
        vlm_detset_free(&d->ds);
        vlm_coco_gt_free(&d->gt);
    }
    memset(d, 0, sizeof *d);
}

vlm_status vlm_det_split_load(vlm_det_split *d, const char *json, int64_t limit, vlm_error *err) {
    memset(d, 0, sizeof *d);
    vlm_status st = vlm_coco_gt_load(&d->gt, json, err);
    if (st) return st;
    if ((st = vlm_detset_from_gt(&d->ds, &d->gt, json, NULL, err))) {
        vlm_coco_gt_free(&d->gt);
        return st;
    }
    d->loaded = 1;
    d->n = limit > 0 && limit < d->ds.n_images ? limit : d->ds.n_images;
    return VLM_OK;
}

// ---------------------------------------------------------------- evaluation

// Runs the detector over a split with the split's own category names as
// queries, writes COCO results (if out_json) and evaluates them.
vlm_status vlm_owl_evaluate(vlm_owl *o, vlm_det_ensemble *ens, const vlm_det_split *d, const char *const *templates,
                            int nt, int B, int max_det, const char *out_json, vlm_det_eval *ev, char *summary,
                            size_t summary_cap, vlm_error *err) {
    double t0 = vlm_now();
    memset(ev, 0, sizeof *ev);
    const vlm_detset *ds = &d->ds;
    int Q = ds->n_classes, E = o->det.cfg.embed_dim, S = o->det.cfg.vit.image_size, N = o->det.grid * o->det.grid;
    float *q = malloc(sizeof(float) * (size_t)Q * E);
    vlm_det_box *bx = malloc(sizeof(vlm_det_box) * (size_t)max_det);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)B);
    vlm_coco_results res;
    vlm_coco_results_init(&res);
    vlm_detbatch bt;
    vlm_detaug aug;
    vlm_detaug_init(&aug, S);
    int have_bt = 0, have_ctx = 0;
    vlm_ctx c;
    vlm_status st = !q || !bx || !idx ? vlm_errorf(err, VLM_ERR_OOM, "detect eval: out of memory") : VLM_OK;
    if (!st) st = vlm_owl_queries(o, (const char *const *)ds->classnames, Q, templates, nt, q, err);
    if (!st && ens) st = vlm_det_ensemble_queries(ens, (const char *const *)ds->classnames, Q, templates, nt, err);
    if (!st && !(st = vlm_detbatch_init(&bt, B, S, ds->max_boxes > 0 ? ds->max_boxes : 1, err))) have_bt = 1;
    if (!st && !(st = vlm_ctx_init(&c, 64u << 20, 0, err))) have_ctx = 1;
    if (st) goto done;
    c.grad_enabled = 0;
    c.training = 0;
    for (int64_t i0 = 0; i0 < d->n && !st; i0 += B) {
        int nb = d->n - i0 < B ? (int)(d->n - i0) : B;
        for (int b = 0; b < nb; b++) idx[b] = i0 + b;
        if ((st = vlm_detset_batch(ds, &aug, idx, nb, 0, 0, 0, &bt, err))) break;
        vlm_ctx_reset(&c);
        int64_t sh[4] = {nb, 3, S, S};
        vlm_det_out out;
        if (vlm_detector_forward(&c, &o->det, vlm_tensor_wrap(&c, VLM_F32, 4, sh, bt.images, NULL), q, Q, &out)) {
            st = c.status;
            if (err) *err = c.err;
            break;
        }
        for (int b = 0; b < nb && !st; b++) {
            int64_t i = i0 + b;
            if (ens) {
                vlm_image view;
                vlm_detset_image(ds, i, &view);
                st = vlm_det_ensemble_rescore(ens, &view, vlm_f32(out.boxes) + (size_t)b * N * 4,
                                              vlm_f32(out.logits) + (size_t)b * N * Q, N, err);
                if (st) break;
            }
            int n = vlm_detector_decode(vlm_f32(out.logits) + (size_t)b * N * Q, vlm_f32(out.boxes) + (size_t)b * N * 4,
                                        N, Q, NULL, ds->width[i], ds->height[i], max_det, 0, o->det.cfg.nms_iou, bx);
            if (n < 0) st = vlm_errorf(err, VLM_ERR_OOM, "detect eval: out of memory");
            for (int k = 0; k < n && !st; k++) {
                double box[4] = {bx[k].x, bx[k].y, bx[k].w, bx[k].h};
                st = vlm_coco_results_add(&res, ds->image_ids[i], ds->category_ids[bx[k].query], box, bx[k].score, err);
            }
        }
    }
    if (!st && out_json) st = vlm_coco_results_save(&res, out_json, err);
    if (!st) {
        // evaluate the images we ran on: a --val-limit prefix drops the rest of the ground truth
        vlm_coco_gt cut;
        vlm_coco_gt_init(&cut);
        const vlm_coco_gt *gt = &d->gt;
        if (d->n < d->gt.n_images) {
            for (int64_t i = 0; i < d->n && !st; i++) {
                long j = vlm_coco_gt_find_image(&d->gt, ds->image_ids[i]);
                st = vlm_coco_gt_add_image(&cut, d->gt.images[j].id, d->gt.images[j].width, d->gt.images[j].height,
                                           d->gt.images[j].file_name, err);
            }
            for (long k = 0; k < d->gt.n_categories && !st; k++)
                st = vlm_coco_gt_add_category(&cut, d->gt.categories[k].id, d->gt.categories[k].name, NULL, err);
            for (long a = 0; a < d->gt.n_anns && !st; a++)
                if (vlm_coco_gt_find_image(&cut, d->gt.anns[a].image_id) >= 0)
                    st = vlm_coco_gt_add_ann(&cut, &d->gt.anns[a], err);
            gt = &cut;
        }
        vlm_coco_eval e;
        vlm_coco_eval_init(&e);
        if (!st) st = vlm_coco_eval_run(&e, gt, &res, err);
        if (!st) {
            memcpy(ev->stats, e.stats, sizeof ev->stats);
            if (summary) vlm_coco_eval_summary(&e, summary, summary_cap);
        }
        vlm_coco_eval_free(&e);
        vlm_coco_gt_free(&cut);
    }
    ev->n_images = d->n;
    ev->n_dets = res.n;
done:
    if (have_ctx) vlm_ctx_free(&c);
    if (have_bt) vlm_detbatch_free(&bt);
    ev->seconds = vlm_now() - t0;
    vlm_coco_results_free(&res);
    free(q);
    free(bx);
    free(idx);
    return st;
}

void vlm_det_eval_json(char *buf, size_t cap, const char *prefix, const double *s) {
    size_t n = 0;
    for (int i = 0; i < VLM_COCO_NSTATS && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"%s%s\": %.6f", i ? ", " : "", prefix, vlm_coco_eval_stat_name(i),
                              s[i]);
}
