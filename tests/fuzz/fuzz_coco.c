// libFuzzer: COCO ground truth JSON, and results JSON against a fixed ground
// truth (first input byte picks which).
#include "data/coco.h"
#include "tests/fuzz/fuzz_util.h"

static const char gt_json[] =
    "{\"images\": [{\"id\": 1, \"width\": 64, \"height\": 48, \"file_name\": \"a.png\"}],"
    " \"categories\": [{\"id\": 3, \"name\": \"cat\"}],"
    " \"annotations\": [{\"id\": 1, \"image_id\": 1, \"category_id\": 3, \"bbox\": [1, 2, 10, 12], \"area\": 120,"
    " \"iscrowd\": 0}]}";

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 1) return 0;
    vlm_error err = {0};
    if (d[0] & 1) {
        vlm_coco_gt gt;
        if (vlm_coco_gt_parse(&gt, (const char *)d + 1, n - 1, "fuzz.json", &err) == VLM_OK) {
            vlm_coco_gt_validate(&gt, "fuzz.json", &err);
            vlm_coco_gt_free(&gt);
        }
        return 0;
    }
    static vlm_coco_gt gt;
    static int init;
    if (!init && vlm_coco_gt_parse(&gt, gt_json, sizeof gt_json - 1, "gt", &err) != VLM_OK) abort();
    init = 1;
    vlm_coco_results r;
    if (vlm_coco_results_parse(&r, (const char *)d + 1, n - 1, "fuzz.json", &gt, &err) == VLM_OK)
        vlm_coco_results_free(&r);
    return 0;
}
