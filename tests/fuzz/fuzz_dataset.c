// libFuzzer: the dataset formats' indexers and readers. First byte: 0 a TSV
// manifest, 1 a CSV manifest, 2 a webdataset tar shard, 3 an IDX images file
// (raw), 4 a gzip IDX file; the rest is the file. Every indexed sample is then
// read (captions, labels, image bytes; images are not decoded here).
#include "data/dataset.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 1) return 0;
    static const char *ext[5] = {"tsv", "csv", "tar", "images-idx3-ubyte", "images-idx3-ubyte.gz"};
    int k = d[0] % 5;
    const char *path = fz_file(d + 1, n - 1, ext[k]);
    vlm_dataset_opts o;
    vlm_dataset_opts_default(&o);
    if (k == 1) o.sep = ',';
    o.max_bad = -1;
    vlm_dataset ds;
    vlm_error err = {0};
    if (vlm_dataset_open(&ds, path, &o, &err) == VLM_OK) {
        vlm_sample s;
        vlm_sample_init(&s);
        for (int64_t i = 0; i < ds.n && i < 64; i++) {
            vlm_dataset_read(&ds, i, &s, &err);
            vlm_dataset_label(&ds, i);
        }
        vlm_sample_free(&s);
        vlm_dataset_free(&ds);
    }
    unlink(path);
    return 0;
}
