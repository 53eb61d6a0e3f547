// libFuzzer: SVG sniffing and rasterisation (librsvg) at a small size, both
// backgrounds, then the eval transform of what draws.
#include "data/image.h"
#include "data/transform.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    static vlm_image img;
    static vlm_transform_scratch sc;
    static int init;
    if (!init) {
        vlm_image_init(&img);
        vlm_transform_scratch_init(&sc);
        init = 1;
    }
    vlm_decode_opts o;
    vlm_decode_opts_default(&o);
    o.svg_size = 16 + (n ? d[0] % 48 : 0);
    o.alpha = n && (d[n - 1] & 1) ? VLM_ALPHA_COMPOSITE : VLM_ALPHA_DROP;
    o.background[1] = 0;
    vlm_error err = {0};
    int w, h;
    vlm_image_format fmt;
    vlm_image_probe(d, n, "fuzz.svg", &w, &h, &fmt, &err);
    if (vlm_image_decode(&img, d, n, "fuzz.svg", &o, &err) != VLM_OK) return 0;
    vlm_transform t;
    vlm_transform_init(&t, 16);
    uint8_t out[16 * 16 * 3];
    vlm_transform_eval_u8(&t, &img, out, &sc, &err);
    return 0;
}
