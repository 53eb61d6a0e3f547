// COCO reading/writing and the pycocotools-exact bbox evaluator: the shared
// pycocotools reference (set1), one hand-made case per matching rule, and
// malformed files that must fail with a message instead of crashing.
#include "data/coco.h"
#include "eval/coco_eval.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ------------------------------------------------------------ helpers

// Evaluates GT/DT given as JSON text; returns the status.
static vlm_status eval_json(const char *gt_json, const char *dt_json, vlm_coco_eval *ev, vlm_error *err) {
    vlm_coco_gt gt;
    vlm_coco_results dt;
    vlm_coco_eval_init(ev);
    vlm_status st = vlm_coco_gt_parse(&gt, gt_json, strlen(gt_json), "gt.json", err);
    if (st) return st;
    st = vlm_coco_results_parse(&dt, dt_json, strlen(dt_json), "dt.json", &gt, err);
    if (!st) st = vlm_coco_eval_run(ev, &gt, &dt, err);
    vlm_coco_results_free(&dt);
    vlm_coco_gt_free(&gt);
    return st;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-12; }

// Category index in ev (ascending ids).
static long cat_index(const vlm_coco_eval *ev, int64_t id) {
    for (long k = 0; k < ev->n_categories; k++)
        if (ev->category_ids[k] == id) return k;
    return -1;
}

// Mean precision over recall thresholds at IoU threshold t, area all, maxDets 100, category k.
static double ap_at(const vlm_coco_eval *ev, int t, long k) {
    double s = 0;
    for (int r = 0; r < VLM_COCO_R; r++) s += ev->precision[vlm_coco_prec_idx(ev, t, r, k, 0, 2)];
    return s / VLM_COCO_R;
}

// One image 1 (200x200), categories 1 and 2; annotations/results spliced in.
#define GT1(anns) \
    "{\"images\":[{\"id\":1,\"width\":200,\"height\":200}],\"categories\":[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":\"b\"}]," \
    "\"annotations\":[" anns "]}"
#define ANN(id, cat, x, y, w, h, area, crowd)                                                         \
    "{\"id\":" #id ",\"image_id\":1,\"category_id\":" #cat ",\"bbox\":[" #x "," #y "," #w "," #h "],\"area\":" #area \
    ",\"iscrowd\":" #crowd "}"
#define DET(img, cat, x, y, w, h, score) \
    "{\"image_id\":" #img ",\"category_id\":" #cat ",\"bbox\":[" #x "," #y "," #w "," #h "],\"score\":" #score "}"

// ------------------------------------------------------------ (a) reference

static void test_reference(void) {
    const char *gt_path = tu_src("../shared/reference/coco/set1.gt.json");
    const char *dt_path = tu_src("../shared/reference/coco/set1.dt.json");
    const char *ref_path = tu_src("../shared/reference/coco/set1.stats.json");
    vlm_error err = {0};
    vlm_coco_eval ev;
    vlm_status st = vlm_coco_eval_files(&ev, gt_path, dt_path, &err);
    CHECK(st == VLM_OK, "set1 eval failed: %s", err.msg);
    if (st) return;
    json_error_t je;
    json_t *ref = json_load_file(ref_path, 0, &je);
    CHECK(ref != NULL, "%s: %s", ref_path, je.text);
    if (!ref) {
        vlm_coco_eval_free(&ev);
        return;
    }
    double max_diff = 0;
    int matched = 0;
    json_t *stats = json_object_get(ref, "stats");
    for (int i = 0; i < VLM_COCO_NSTATS; i++) {
        json_t *v = json_object_get(stats, vlm_coco_eval_stat_name(i));
        CHECK(json_is_number(v), "reference lacks stat %s", vlm_coco_eval_stat_name(i));
        if (!v) continue;
        double d = fabs(ev.stats[i] - json_number_value(v));
        max_diff = fmax(max_diff, d);
        CHECK(d <= 1e-9, "stat %s: %.17g vs pycocotools %.17g", vlm_coco_eval_stat_name(i), ev.stats[i],
              json_number_value(v));
        matched += d <= 1e-9;
    }
    json_t *pc = json_object_get(ref, "per_category_AP");
    CHECK((long)json_object_size(pc) == ev.n_categories, "%zu reference categories, evaluated %ld",
          json_object_size(pc), ev.n_categories);
    const char *key;
    json_t *v;
    json_object_foreach(pc, key, v) {
        long k = cat_index(&ev, strtoll(key, NULL, 10));
        CHECK(k >= 0, "category %s not evaluated", key);
        if (k < 0) continue;
        double d = fabs(ev.category_ap[k] - json_number_value(v));
        max_diff = fmax(max_diff, d);
        CHECK(d <= 1e-9, "category %s AP %.17g vs pycocotools %.17g", key, ev.category_ap[k], json_number_value(v));
        matched += d <= 1e-9;
    }
    CHECK(ev.category_ap[cat_index(&ev, 9)] == -1, "category 9 has no ground truth: AP must be -1");
    CHECK(ev.n_images == json_integer_value(json_object_get(ref, "n_images")), "n_images %ld", ev.n_images);

    // The printed summary: the reference's lines that start with " Average".
    char mine[4096];
    vlm_coco_eval_summary(&ev, mine, sizeof mine);
    const char *summary = json_string_value(json_object_get(ref, "summary"));
    char want[4096] = "";
    size_t wl = 0;
    for (const char *p = summary; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 8 && !strncmp(p, " Average", 8) && wl + n + 2 < sizeof want) {
            memcpy(want + wl, p, n);
            wl += n;
            want[wl++] = '\n';
            want[wl] = 0;
        }
        p += n + (e ? 1 : 0);
    }
    int lines = 0;
    for (const char *p = want; *p; p++) lines += *p == '\n';
    CHECK(lines == 12, "reference summary has %d lines", lines);
    CHECK(!strcmp(mine, want), "summary differs:\n--- vlm\n%s--- pycocotools\n%s", mine, want);
    printf("reference set1: %d numbers within 1e-9 (12 stats + %ld categories), max |diff| %.3g, summary %s\n",
           matched, ev.n_categories, max_diff, strcmp(mine, want) ? "DIFFERS" : "identical (12 lines)");
    json_decref(ref);
    vlm_coco_eval_free(&ev);
}

// ------------------------------------------------------------ (b) rules

static void test_thresholds(void) {
    vlm_coco_eval ev;
    vlm_coco_eval_init(&ev);
    // numpy's linspace doubles: the ends exact, 0.75 exact (summarize() finds it with ==).
    CHECK(ev.iou_thrs[0] == 0.5 && ev.iou_thrs[5] == 0.75 && ev.iou_thrs[9] == 0.95, "iou thresholds");
    CHECK(ev.rec_thrs[0] == 0 && ev.rec_thrs[100] == 1 && ev.rec_thrs[1] == 0.01, "recall thresholds");
    CHECK(ev.iou_thrs[3] == 3 * ((0.95 - 0.5) / 9) + 0.5, "iou_thrs[3] = 3*step + 0.5");
    CHECK(ev.area_rng[0][1] == 1e10 && ev.area_rng[2][0] == 1024 && ev.area_rng[2][1] == 9216, "area ranges");
    vlm_coco_eval_free(&ev);
}

static void test_perfect(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    vlm_status st = eval_json(GT1(ANN(1, 1, 10, 10, 50, 40, 2000, 0)), "[" DET(1, 1, 10, 10, 50, 40, 0.9) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_AP], 1) && near(ev.stats[VLM_COCO_AP50], 1) && near(ev.stats[VLM_COCO_AP75], 1), "perfect AP %g",
          ev.stats[0]);
    CHECK(near(ev.stats[VLM_COCO_APM], 1) && ev.stats[VLM_COCO_APS] == -1 && ev.stats[VLM_COCO_APL] == -1,
          "area 2000 is medium: APs %g APm %g APl %g", ev.stats[3], ev.stats[4], ev.stats[5]);
    CHECK(ev.stats[VLM_COCO_AR1] == 1 && ev.stats[VLM_COCO_AR100] == 1 && ev.stats[VLM_COCO_ARM] == 1, "perfect AR");
    CHECK(near(ev.category_ap[0], 1) && ev.category_ap[1] == -1, "per category %g %g", ev.category_ap[0], ev.category_ap[1]);
    vlm_coco_eval_free(&ev);
}

// GT [0,0,100,100]; a detection [0,0,w,100] has IoU w/100 exactly.
static double iou_case(const char *det, int t) {
    char dt[256];
    snprintf(dt, sizeof dt, "[%s]", det);
    vlm_coco_eval ev;
    vlm_error err = {0};
    vlm_status st = eval_json(GT1(ANN(1, 1, 0, 0, 100, 100, 10000, 0)), dt, &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return -2;
    double r = t < 0 ? ev.stats[VLM_COCO_AP] : ap_at(&ev, t, 0);
    vlm_coco_eval_free(&ev);
    return r;
}

static void test_iou_thresholds(void) {
    // IoU exactly 0.5 matches at .50 (>=) but not at .55
    CHECK(near(iou_case(DET(1, 1, 0, 0, 50, 100, 0.9), 0), 1), "IoU 0.5 at threshold .50");
    CHECK(iou_case(DET(1, 1, 0, 0, 50, 100, 0.9), 1) == 0, "IoU 0.5 at threshold .55");
    CHECK(near(iou_case(DET(1, 1, 0, 0, 50, 100, 0.9), -1), 0.1), "IoU 0.5: AP = 1/10");
    // just below 0.5: no match anywhere
    CHECK(iou_case(DET(1, 1, 0, 0, 49.999, 100, 0.9), 0) == 0, "IoU 0.49999 at .50");
    CHECK(iou_case(DET(1, 1, 0, 0, 49.999, 100, 0.9), -1) == 0, "IoU 0.49999: AP 0");
    // IoU 0.75 exactly matches .50 .. .75 (6 thresholds); just below, 5
    CHECK(near(iou_case(DET(1, 1, 0, 0, 75, 100, 0.9), 5), 1), "IoU 0.75 at .75");
    CHECK(near(iou_case(DET(1, 1, 0, 0, 75, 100, 0.9), -1), 0.6), "IoU 0.75: AP 0.6");
    CHECK(iou_case(DET(1, 1, 0, 0, 74.999, 100, 0.9), 5) == 0, "IoU 0.74999 at .75");
    CHECK(near(iou_case(DET(1, 1, 0, 0, 74.999, 100, 0.9), -1), 0.5), "IoU 0.74999: AP 0.5");
    // IoU 1 caps the threshold at 1-1e-10: still a match at .95
    CHECK(near(iou_case(DET(1, 1, 0, 0, 100, 100, 0.9), 9), 1), "IoU 1 at .95");
    // a box 95.0 wide: IoU .95 (floating: 0.95 exactly? 9500/10000 rounds to the double 0.95)
    CHECK(near(iou_case(DET(1, 1, 0, 0, 95, 100, 0.9), 9), 1), "IoU 0.95 at .95");
}

static void test_crowd(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    // A crowd region [0,0,100,100] and a normal object at [120,120,40,40].
    // Three detections inside the crowd (IoU with the crowd = intersection /
    // detection area = 1, though a plain IoU would be 0.04): all ignored, even
    // the one scoring above the true positive, and several match one crowd gt.
    const char *gt = GT1(ANN(1, 1, 0, 0, 100, 100, 10000, 1) "," ANN(2, 1, 120, 120, 40, 40, 1600, 0));
    const char *dt = "[" DET(1, 1, 10, 10, 20, 20, 0.95) "," DET(1, 1, 50, 50, 20, 20, 0.8) "," DET(1, 1, 120, 120, 40, 40, 0.9)
        "," DET(1, 1, 60, 10, 20, 20, 0.7) "]";
    vlm_status st = eval_json(gt, dt, &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_AP], 1), "crowd detections are ignored: AP %.17g", ev.stats[0]);
    CHECK(ev.stats[VLM_COCO_AR100] == 1, "the crowd gt is not counted for recall: AR %.17g", ev.stats[8]);
    vlm_coco_eval_free(&ev);

    // The same boxes without the crowd flag: the 0.95 detection is a false
    // positive ranked first (IoU .04), and the regular gt 1 is missed.
    const char *gt2 = GT1(ANN(1, 1, 0, 0, 100, 100, 10000, 0) "," ANN(2, 1, 120, 120, 40, 40, 1600, 0));
    st = eval_json(gt2, dt, &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    // order FP(.95) TP(.9) FP FP: rc [0 .5 .5 .5], pr [0 .5 .33 .25] -> .5 up to recall .5 (51 of 101)
    CHECK(near(ev.stats[VLM_COCO_AP], 0.5 * 51 / 101), "non-crowd AP %.17g", ev.stats[0]);
    CHECK(near(ev.stats[VLM_COCO_AR100], 0.5), "non-crowd AR %.17g", ev.stats[8]);
    vlm_coco_eval_free(&ev);

    // A detection overlapping both: it prefers the regular gt (ignored ones
    // are tried only when no regular one matched).
    const char *gt3 = GT1(ANN(1, 1, 0, 0, 100, 100, 10000, 1) "," ANN(2, 1, 50, 0, 60, 100, 6000, 0));
    st = eval_json(gt3, "[" DET(1, 1, 50, 0, 50, 100, 0.9) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    // IoU with the regular gt 5000/6000 = .833: matched up to .80 (7 thresholds),
    // above it the crowd takes it (ignored): AP = 7/10, AR = 7/10.
    CHECK(near(ev.stats[VLM_COCO_AP], 0.7), "crowd vs regular: AP %.17g", ev.stats[0]);
    vlm_coco_eval_free(&ev);
}

static void test_area_field(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    // A 50x50 box (w*h 2500, medium) whose area field says 500 (small).
    const char *gt = GT1(ANN(1, 1, 10, 10, 50, 50, 500, 0));
    vlm_status st = eval_json(gt, "[" DET(1, 1, 10, 10, 50, 50, 0.9) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_APS], 1), "area field 500 is small: APs %g", ev.stats[3]);
    CHECK(ev.stats[VLM_COCO_APM] == -1, "no medium gt (the area field rules, not w*h): APm %g", ev.stats[4]);
    CHECK(ev.stats[VLM_COCO_ARS] == 1 && ev.stats[VLM_COCO_ARM] == -1, "ARs %g ARm %g", ev.stats[9], ev.stats[10]);
    vlm_coco_eval_free(&ev);

    // An unmatched large detection (w*h 10000) scoring higher: a false positive
    // for area all, but ignored for small (outside the range, unmatched).
    st = eval_json(gt, "[" DET(1, 1, 10, 10, 50, 50, 0.5) "," DET(1, 1, 100, 100, 100, 100, 0.9) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_APS], 1), "unmatched out-of-range detection ignored: APs %g", ev.stats[3]);
    CHECK(near(ev.stats[VLM_COCO_AP], 0.5), "but a false positive for area all: AP %.17g", ev.stats[0]);
    vlm_coco_eval_free(&ev);

    // Boundary: area exactly 32^2 is both small and medium (ranges are inclusive).
    st = eval_json(GT1(ANN(1, 1, 0, 0, 32, 32, 1024, 0)), "[" DET(1, 1, 0, 0, 32, 32, 0.9) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_APS], 1) && near(ev.stats[VLM_COCO_APM], 1), "area 1024: APs %g APm %g", ev.stats[3],
          ev.stats[4]);
    vlm_coco_eval_free(&ev);
}

static void test_max_dets(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    // A false positive above the true positive: AR@1 = 0, AR@10 = 1.
    vlm_status st = eval_json(GT1(ANN(1, 1, 0, 0, 50, 50, 2500, 0)),
                              "[" DET(1, 1, 100, 100, 50, 50, 0.9) "," DET(1, 1, 0, 0, 50, 50, 0.8) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(ev.stats[VLM_COCO_AR1] == 0 && ev.stats[VLM_COCO_AR10] == 1 && ev.stats[VLM_COCO_AR100] == 1,
          "AR1 %g AR10 %g AR100 %g", ev.stats[6], ev.stats[7], ev.stats[8]);
    vlm_coco_eval_free(&ev);

    // 100 false positives outscore the true positive: it is cut at maxDets 100.
    static char dt[100 * 96 + 256];
    size_t n = 0;
    n += (size_t)snprintf(dt + n, sizeof dt - n, "[");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(dt + n, sizeof dt - n, "{\"image_id\":1,\"category_id\":1,\"bbox\":[150,%d,10,1],\"score\":0.9},", i);
    strcpy(dt + n, DET(1, 1, 0, 0, 50, 50, 0.1) "]");
    st = eval_json(GT1(ANN(1, 1, 0, 0, 50, 50, 2500, 0)), dt, &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (!st) {
        CHECK(ev.stats[VLM_COCO_AR100] == 0 && ev.stats[VLM_COCO_AP] == 0, "101st detection dropped: AR100 %g",
              ev.stats[8]);
        vlm_coco_eval_free(&ev);
    }
    // With the true positive tied at 0.9 but listed last it is still 101st (stable order).
    n = 0;
    n += (size_t)snprintf(dt + n, sizeof dt - n, "[");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(dt + n, sizeof dt - n, "{\"image_id\":1,\"category_id\":1,\"bbox\":[150,%d,10,1],\"score\":0.9},", i);
    strcpy(dt + n, DET(1, 1, 0, 0, 50, 50, 0.9) "]");
    st = eval_json(GT1(ANN(1, 1, 0, 0, 50, 50, 2500, 0)), dt, &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (!st) {
        CHECK(ev.stats[VLM_COCO_AR100] == 0, "tied 101st detection dropped: AR100 %g", ev.stats[8]);
        vlm_coco_eval_free(&ev);
    }
}

static void test_duplicates(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    // Image 1 has gt A, image 2 gt B. A is detected twice: the second is a
    // false positive. Order TP(.9) FP(.8) TP(.7): rc [.5 .5 1], pr [1 .5 .667]
    // -> monotone [1 .667 .667]: 1 up to recall .5, 2/3 after.
    const char *gt =
        "{\"images\":[{\"id\":1},{\"id\":2}],\"categories\":[{\"id\":1}],\"annotations\":["
        "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,40,40],\"area\":1600,\"iscrowd\":0},"
        "{\"id\":2,\"image_id\":2,\"category_id\":1,\"bbox\":[0,0,40,40],\"area\":1600,\"iscrowd\":0}]}";
    vlm_status st = eval_json(
        gt, "[" DET(1, 1, 0, 0, 40, 40, 0.9) "," DET(1, 1, 0, 0, 40, 40, 0.8) "," DET(2, 1, 0, 0, 40, 40, 0.7) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    double want = (51 * 1.0 + 50 * (2.0 / 3.0)) / 101;
    CHECK(fabs(ev.stats[VLM_COCO_AP] - want) < 1e-12, "duplicate: AP %.17g want %.17g", ev.stats[0], want);
    CHECK(ev.stats[VLM_COCO_AR100] == 1, "AR %g", ev.stats[8]);
    vlm_coco_eval_free(&ev);
}

static void test_ties(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    const char *gt = GT1(ANN(1, 1, 0, 0, 50, 50, 2500, 0));
    // Equal scores: the results order decides. FP first -> pr [0 .5] -> AP .5
    vlm_status st = eval_json(gt, "[" DET(1, 1, 100, 100, 50, 50, 0.5) "," DET(1, 1, 0, 0, 50, 50, 0.5) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_AP], 0.5), "tie, FP listed first: AP %.17g", ev.stats[0]);
    vlm_coco_eval_free(&ev);
    st = eval_json(gt, "[" DET(1, 1, 0, 0, 50, 50, 0.5) "," DET(1, 1, 100, 100, 50, 50, 0.5) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_AP], 1), "tie, TP listed first: AP %.17g", ev.stats[0]);
    vlm_coco_eval_free(&ev);

    // Across images accumulate concatenates images in ascending id order before
    // its stable sort: a tied FP on image 2 listed first still ranks after
    // the TP on image 1.
    const char *gt2 = "{\"images\":[{\"id\":2},{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":["
                      "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,40,40],\"area\":1600,\"iscrowd\":0}]}";
    st = eval_json(gt2, "[" DET(2, 1, 0, 0, 40, 40, 0.5) "," DET(1, 1, 0, 0, 40, 40, 0.5) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_AP], 1), "tie across images goes by image id: AP %.17g", ev.stats[0]);
    vlm_coco_eval_free(&ev);
}

static void test_category_without_gt(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    // Category 2 has detections but no ground truth: -1, left out of the means.
    vlm_status st = eval_json(GT1(ANN(1, 1, 0, 0, 50, 50, 2500, 0)),
                              "[" DET(1, 1, 0, 0, 50, 50, 0.9) "," DET(1, 2, 0, 0, 50, 50, 0.95) "," DET(1, 2, 60, 60, 50, 50, 0.9)
                              "," DET(1, 7, 0, 0, 50, 50, 0.9) "]",
                              &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    long k2 = cat_index(&ev, 2);
    CHECK(near(ev.category_ap[cat_index(&ev, 1)], 1) && ev.category_ap[k2] == -1, "per category %g %g", ev.category_ap[0],
          ev.category_ap[1]);
    CHECK(ev.precision[vlm_coco_prec_idx(&ev, 0, 0, k2, 0, 2)] == -1 && ev.recall[vlm_coco_rec_idx(&ev, 0, k2, 0, 2)] == -1,
          "no-gt category stays -1");
    CHECK(near(ev.stats[VLM_COCO_AP], 1) && ev.stats[VLM_COCO_AR100] == 1, "excluded from the means: AP %g", ev.stats[0]);
    // category 7 is not in the ground truth: skipped and counted (pycocotools drops it)
    CHECK(ev.n_results_unknown_category == 1 && ev.n_results_used == 3, "unknown category: %ld skipped",
          ev.n_results_unknown_category);
    vlm_coco_eval_free(&ev);

    // No ground truth and no detections at all: every stat -1.
    st = eval_json(GT1(""), "[]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    int all = 1;
    for (int i = 0; i < VLM_COCO_NSTATS; i++) all &= ev.stats[i] == -1;
    CHECK(all, "empty evaluation: all stats -1");
    char buf[2048];
    vlm_coco_eval_summary(&ev, buf, sizeof buf);
    CHECK(strstr(buf, "maxDets=  1 ] = -1.000\n") != NULL, "-1 printed as -1.000:\n%s", buf);
    vlm_coco_eval_free(&ev);
}

static void test_image_without_gt(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    // Image 2 has no ground truth; its detection is a false positive.
    const char *gt = "{\"images\":[{\"id\":1},{\"id\":2}],\"categories\":[{\"id\":1}],\"annotations\":["
                     "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,40,40],\"area\":1600,\"iscrowd\":0}]}";
    vlm_status st = eval_json(gt, "[" DET(1, 1, 0, 0, 40, 40, 0.5) "," DET(2, 1, 0, 0, 40, 40, 0.9) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_AP], 0.5), "FP on an empty image ranked first: AP %.17g", ev.stats[0]);
    vlm_coco_eval_free(&ev);
    st = eval_json(gt, "[" DET(1, 1, 0, 0, 40, 40, 0.5) "," DET(2, 1, 0, 0, 40, 40, 0.3) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(near(ev.stats[VLM_COCO_AP], 1), "FP on an empty image ranked last: AP %.17g", ev.stats[0]);
    vlm_coco_eval_free(&ev);
    // Only false positives on images without ground truth, no gt anywhere for the category: -1.
    st = eval_json("{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[]}",
                   "[" DET(1, 1, 0, 0, 40, 40, 0.5) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(ev.stats[VLM_COCO_AP] == -1, "no gt at all: AP %g", ev.stats[0]);
    vlm_coco_eval_free(&ev);
}

// The "ignore" field is overwritten by iscrowd in pycocotools: it changes nothing.
static void test_ignore_field(void) {
    vlm_coco_eval ev;
    vlm_error err = {0};
    const char *gt = "{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":["
                     "{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[0,0,40,40],\"area\":1600,\"iscrowd\":0,\"ignore\":1}]}";
    vlm_status st = eval_json(gt, "[" DET(1, 1, 100, 100, 40, 40, 0.5) "]", &ev, &err);
    CHECK(st == VLM_OK, "%s", err.msg);
    if (st) return;
    CHECK(ev.stats[VLM_COCO_AP] == 0 && ev.stats[VLM_COCO_AR100] == 0, "ignore:1 still counts: AP %g", ev.stats[0]);
    vlm_coco_eval_free(&ev);
}

// ------------------------------------------------------------ (c) malformed

static void expect_gt_error(const char *json, const char *want) {
    vlm_coco_gt gt;
    vlm_error err = {0};
    vlm_status st = vlm_coco_gt_parse(&gt, json, strlen(json), "bad-gt.json", &err);
    CHECK(st != VLM_OK, "accepted bad ground truth (%s)", want);
    CHECK(st == VLM_OK || (strstr(err.msg, "bad-gt.json") && strstr(err.msg, want)), "message '%s' lacks '%s'",
          err.msg, want);
    CHECK(gt.n_images == 0 && gt.anns == NULL, "failed load leaves gt empty");
    if (!st) vlm_coco_gt_free(&gt);
}

static void expect_dt_error(const char *json, const char *want) {
    const char *gt_json = GT1(ANN(1, 1, 0, 0, 50, 50, 2500, 0));
    vlm_coco_gt gt;
    vlm_coco_results r;
    vlm_error err = {0};
    if (vlm_coco_gt_parse(&gt, gt_json, strlen(gt_json), "gt.json", &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    vlm_status st = vlm_coco_results_parse(&r, json, strlen(json), "bad-dt.json", &gt, &err);
    CHECK(st != VLM_OK, "accepted bad results (%s)", want);
    CHECK(st == VLM_OK || (strstr(err.msg, "bad-dt.json") && strstr(err.msg, want)), "message '%s' lacks '%s'",
          err.msg, want);
    CHECK(r.n == 0 && r.dets == NULL, "failed load leaves results empty");
    if (!st) vlm_coco_results_free(&r);
    vlm_coco_gt_free(&gt);
}

static void test_malformed(void) {
    const char *good = GT1(ANN(1, 1, 0, 0, 50, 50, 2500, 0));
    // truncated at every length: an error each time, never a crash
    size_t n = strlen(good);
    int all_fail = 1;
    for (size_t len = 0; len < n; len++) {
        vlm_coco_gt gt;
        vlm_error err = {0};
        if (vlm_coco_gt_parse(&gt, good, len, "t.json", &err) == VLM_OK) {
            all_fail = 0;
            vlm_coco_gt_free(&gt);
        }
    }
    CHECK(all_fail, "a truncated ground truth parsed");
    expect_gt_error("{\"images\": [{\"id\": 1}", "invalid JSON");
    expect_gt_error("", "empty");
    expect_gt_error("[]", "must be a JSON object");
    expect_gt_error("{\"images\":[],\"annotations\":[]}", "missing \"categories\"");
    expect_gt_error("{\"images\":{},\"annotations\":[],\"categories\":[]}", "\"images\" must be an array");
    expect_gt_error(GT1("{\"id\":1,\"image_id\":1,\"category_id\":1,\"area\":5,\"iscrowd\":0}"), "annotations[0] (id 1): missing \"bbox\"");
    expect_gt_error(GT1("{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3],\"area\":5,\"iscrowd\":0}"), "array of 3");
    expect_gt_error(GT1("{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3,\"4\"],\"area\":5,\"iscrowd\":0}"), "bbox[3] must be a number");
    expect_gt_error(GT1(ANN(1, 1, 0, 0, -5, 50, 2500, 0)), "negative width");
    expect_gt_error(GT1(ANN(1, 1, 0, 0, 5, 50, -1, 0)), "negative \"area\"");
    expect_gt_error(GT1("{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3,4],\"iscrowd\":0}"), "missing \"area\"");
    expect_gt_error(GT1("{\"id\":1,\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3,4],\"area\":12}"), "missing \"iscrowd\"");
    expect_gt_error(GT1("{\"id\":\"1\",\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3,4],\"area\":12,\"iscrowd\":0}"), "must be an integer, got a string");
    expect_gt_error(GT1("{\"id\":1,\"image_id\":1.5,\"category_id\":1,\"bbox\":[1,2,3,4],\"area\":12,\"iscrowd\":0}"), "\"image_id\" must be an integer");
    expect_gt_error(GT1(ANN(0, 1, 0, 0, 5, 5, 25, 0)), "id 0 is not allowed");
    expect_gt_error(GT1(ANN(1, 1, 0, 0, 5, 5, 25, 0) "," ANN(1, 2, 0, 0, 5, 5, 25, 0)), "duplicate annotation id 1");
    expect_gt_error(GT1(ANN(1, 3, 0, 0, 5, 5, 25, 0)), "category_id 3 is not in");
    expect_gt_error("{\"images\":[{\"id\":1},{\"id\":1}],\"annotations\":[],\"categories\":[]}", "duplicate image id 1");
    expect_gt_error("{\"images\":[{\"id\":2}],\"annotations\":[" ANN(1, 1, 0, 0, 5, 5, 25, 0) "],\"categories\":[{\"id\":1}]}",
                    "image_id 1 is not in \"images\"");
    expect_gt_error("{\"images\":[{\"id\":1,\"width\":-3}],\"annotations\":[],\"categories\":[]}", "\"width\" is negative");
    expect_gt_error("{\"images\":[7],\"annotations\":[],\"categories\":[]}", "images[0]: must be an object");

    expect_dt_error("[" DET(1, 1, 0, 0, 5, 5, 0.5) ",", "invalid JSON");
    expect_dt_error("{}", "must be a JSON array");
    expect_dt_error("[{\"image_id\":1,\"category_id\":1,\"score\":0.5}]", "results[0] (image_id 1): missing \"bbox\"");
    expect_dt_error("[{\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3],\"score\":0.5}]", "array of 3");
    expect_dt_error("[" DET(1, 1, 0, 0, 5, 5, 0.5) "," DET(4, 1, 0, 0, 5, 5, 0.5) "]", "results[1] (image_id 4): image_id 4 is not an image");
    expect_dt_error("[{\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3,4]}]", "missing \"score\"");
    expect_dt_error("[{\"image_id\":1,\"category_id\":1,\"bbox\":[1,2,3,4],\"score\":\"high\"}]", "\"score\" must be a number");
    expect_dt_error("[" DET(1, 1, 0, 0, 5, -5, 0.5) "]", "negative height");
    expect_dt_error("[null]", "results[0]: must be an object");
    expect_dt_error("[{\"category_id\":1,\"bbox\":[1,2,3,4],\"score\":1}]", "missing \"image_id\"");

    // files: missing, truncated on disk
    vlm_coco_gt gt;
    vlm_error err = {0};
    CHECK(vlm_coco_gt_load(&gt, "/nonexistent/gt.json", &err) == VLM_ERR_IO && strstr(err.msg, "/nonexistent/gt.json"),
          "missing file: %s", err.msg);
    char path[512];
    snprintf(path, sizeof path, "%s/test_coco_trunc.%ld.json", VLM_BINARY_DIR, (long)getpid());
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(good, 1, n / 2, f);
        fclose(f);
        vlm_coco_eval ev;
        CHECK(vlm_coco_eval_files(&ev, path, path, &err) == VLM_ERR_FORMAT && strstr(err.msg, path), "truncated file: %s",
              err.msg);
        unlink(path);
    }
}

// ------------------------------------------------------------ writers

static void test_round_trip(void) {
    vlm_error err = {0};
    vlm_coco_gt gt;
    vlm_coco_gt_init(&gt);
    int ok = !vlm_coco_gt_add_image(&gt, 5, 64, 96, "scene \"5\".png", &err) && !vlm_coco_gt_add_image(&gt, 9, 0, 0, NULL, &err) &&
             !vlm_coco_gt_add_category(&gt, 3, "t-shirt/top", "fashion", &err) && !vlm_coco_gt_add_category(&gt, 1, "😀", NULL, &err);
    vlm_coco_ann a = {.image_id = 5, .category_id = 3, .bbox = {0.1, 1.0 / 3, 10.25, 7e-3}, .area = -1};
    ok = ok && !vlm_coco_gt_add_ann(&gt, &a, &err);
    a = (vlm_coco_ann){.image_id = 9, .category_id = 1, .bbox = {1, 2, 3, 4}, .area = 11.5, .iscrowd = 1, .ignore = 1};
    ok = ok && !vlm_coco_gt_add_ann(&gt, &a, &err);
    CHECK(ok, "building gt: %s", err.msg);
    CHECK(gt.anns[0].id == 1 && gt.anns[1].id == 2 && gt.anns[0].area == 10.25 * 7e-3, "auto ids and area");
    a = (vlm_coco_ann){.image_id = 5, .category_id = 3, .bbox = {1, 2, -3, 4}};
    CHECK(vlm_coco_gt_add_ann(&gt, &a, &err) != VLM_OK, "negative width accepted by add_ann");
    char gpath[512], dpath[512];
    snprintf(gpath, sizeof gpath, "%s/test_coco_gt.%ld.json", VLM_BINARY_DIR, (long)getpid());
    snprintf(dpath, sizeof dpath, "%s/test_coco_dt.%ld.json", VLM_BINARY_DIR, (long)getpid());
    vlm_status st = vlm_coco_gt_save(&gt, gpath, &err);
    CHECK(st == VLM_OK, "save gt: %s", err.msg);
    vlm_coco_gt back;
    st = vlm_coco_gt_load(&back, gpath, &err);
    CHECK(st == VLM_OK, "reload gt: %s", err.msg);
    if (!st) {
        CHECK(back.n_images == 2 && back.n_categories == 2 && back.n_anns == 2, "counts");
        CHECK(!strcmp(back.images[0].file_name, "scene \"5\".png") && back.images[0].height == 96 && !back.images[1].file_name,
              "images");
        CHECK(!strcmp(back.categories[1].name, "😀") && !strcmp(back.categories[0].supercategory, "fashion"), "categories");
        CHECK(!memcmp(back.anns[0].bbox, gt.anns[0].bbox, sizeof gt.anns[0].bbox) && back.anns[0].area == gt.anns[0].area,
              "bbox/area bit-exact after a round trip");
        CHECK(back.anns[1].iscrowd == 1 && back.anns[1].ignore == 1 && back.anns[0].ignore == 0, "flags");
        vlm_coco_gt_free(&back);
    }
    vlm_coco_results r;
    vlm_coco_results_init(&r);
    double b1[4] = {0.1, 0.2, 0.30000000000000004, 1e-300}, b2[4] = {-5, 3, 0, 0};
    ok = !vlm_coco_results_add(&r, 5, 3, b1, 0.123456789012345678, &err) && !vlm_coco_results_add(&r, 9, 2, b2, -1.5, &err);
    CHECK(ok, "results add: %s", err.msg);
    CHECK(vlm_coco_results_add(&r, 5, 3, b1, NAN, &err) != VLM_OK, "NaN score accepted");
    st = vlm_coco_results_save(&r, dpath, &err);
    CHECK(st == VLM_OK, "save results: %s", err.msg);
    vlm_coco_results rb;
    st = vlm_coco_results_load(&rb, dpath, &gt, &err);
    CHECK(st == VLM_OK, "reload results: %s", err.msg);
    if (!st) {
        CHECK(rb.n == 2 && !memcmp(rb.dets[0].bbox, b1, sizeof b1) && rb.dets[0].score == 0.123456789012345678 &&
                  rb.dets[1].category_id == 2 && rb.dets[1].score == -1.5,
              "results bit-exact after a round trip");
        vlm_coco_results_free(&rb);
    }
    vlm_coco_results_free(&r);
    vlm_coco_gt_free(&gt);
    unlink(gpath);
    unlink(dpath);
}

int main(void) {
    test_reference();
    test_thresholds();
    test_perfect();
    test_iou_thresholds();
    test_crowd();
    test_area_field();
    test_max_dets();
    test_duplicates();
    test_ties();
    test_category_without_gt();
    test_image_without_gt();
    test_ignore_field();
    test_malformed();
    test_round_trip();
    return tu_done("test_coco_eval");
}
