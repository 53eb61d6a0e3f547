// How well a CLIP names the objects of a detection split from their boxes:
// every ground-truth box is cropped as `vlm detect train --ensemble` crops a
// token's box (fusion/detect_ensemble.c: a square of CONTEXT x the longer side)
// and classified among the split's category names. Prints one JSON line:
// top1, n (boxes), per_class {name: top1}. Built and run by bench/crop-naming.sh.
// usage: crop_naming CLIP.safetensors SPLIT.json [CONTEXT]
#include <stdio.h>
#include <stdlib.h>
#include "data/detset.h"
#include "fusion/detect_ensemble.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: crop_naming CLIP.safetensors SPLIT.json [CONTEXT]\n");
        return 2;
    }
    vlm_error err = {0};
    vlm_detset ds;
    if (vlm_detset_load(&ds, argv[2], NULL, &err)) {
        fprintf(stderr, "crop_naming: %s\n", err.msg);
        return 1;
    }
    vlm_det_ensemble_opts o;
    vlm_det_ensemble_opts_default(&o);
    o.clip = argv[1], o.context = argc > 3 ? (float)atof(argv[3]) : 1.0f, o.w_novel = 1, o.top = ds.max_boxes;
    vlm_det_ensemble e;
    const int Q = ds.n_classes;
    if (vlm_det_ensemble_init(&e, &o, &err) ||
        vlm_det_ensemble_queries(&e, (const char *const *)ds.classnames, Q, NULL, 0, &err)) {
        fprintf(stderr, "crop_naming: %s\n", err.msg);
        return 1;
    }
    long ok = 0, n = 0, *hit = calloc((size_t)Q, sizeof(long)), *cnt = calloc((size_t)Q, sizeof(long));
    float *bx = malloc(sizeof(float) * 4 * (size_t)ds.max_boxes), *lg = malloc(sizeof(float) * (size_t)ds.max_boxes * Q);
    for (int64_t i = 0; i < ds.n_images && hit && cnt && bx && lg; i++) {
        int nb = ds.box_count[i];
        for (int k = 0; k < nb; k++) { // COCO x, y, w, h pixels -> cx, cy, w, h in [0, 1]
            const float *b = ds.boxes + 4 * (ds.box_first[i] + k);
            bx[4 * k] = (b[0] + b[2] / 2) / (float)ds.width[i], bx[4 * k + 1] = (b[1] + b[3] / 2) / (float)ds.height[i];
            bx[4 * k + 2] = b[2] / (float)ds.width[i], bx[4 * k + 3] = b[3] / (float)ds.height[i];
        }
        for (int k = 0; k < nb * Q; k++) lg[k] = 0; // w = 1: the fused log-odds are the CLIP's alone
        vlm_image v;
        vlm_detset_image(&ds, i, &v);
        if (nb && vlm_det_ensemble_rescore(&e, &v, bx, lg, nb, &err)) {
            fprintf(stderr, "crop_naming: %s\n", err.msg);
            return 1;
        }
        for (int k = 0; k < nb; k++) {
            int best = 0, gt = ds.box_class[ds.box_first[i] + k];
            for (int q = 1; q < Q; q++)
                if (lg[k * Q + q] > lg[k * Q + best]) best = q;
            ok += best == gt, n++, hit[gt] += best == gt, cnt[gt]++;
        }
    }
    printf("{\"top1\": %.4f, \"n\": %ld, \"context\": %g, \"per_class\": {", n ? (double)ok / (double)n : 0.0, n,
           (double)o.context);
    for (int q = 0; q < Q; q++)
        printf("%s\"%s\": %.3f", q ? ", " : "", ds.classnames[q], cnt[q] ? (double)hit[q] / (double)cnt[q] : 0.0);
    printf("}}\n");
    return 0;
}
