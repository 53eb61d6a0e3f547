// Classify one image zero-shot with a CLIP: classify MODEL IMAGE LABEL...
// (MODEL: any weights vlm reads; prints each label's probability, best first).
#include <stdio.h>
#include <stdlib.h>
#include <vlm.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: classify MODEL IMAGE LABEL...\n");
        return 2;
    }
    vlm_error err = {0};
    vlm_model *m;
    if (vlm_model_open(&m, argv[1], NULL, &err)) {
        fprintf(stderr, "classify: %s\n", err.msg);
        return 1;
    }
    const int n = argc - 3;
    float *img = malloc(sizeof(float) * (size_t)vlm_model_dim(m)), *p = malloc(sizeof(float) * (size_t)n);
    const char *path = argv[2];
    int rc = 1;
    if (img && p && !vlm_model_embed_files(m, &path, 1, img, &err) &&
        !vlm_model_classify(m, img, (const char *const *)argv + 3, n, NULL, 0, p, &err)) {
        for (int done = 0; done < n; done++) { // best first
            int b = -1;
            for (int k = 0; k < n; k++)
                if (p[k] >= 0 && (b < 0 || p[k] > p[b])) b = k;
            printf("%-24s %.4f\n", argv[3 + b], p[b]);
            p[b] = -1;
        }
        rc = 0;
    } else
        fprintf(stderr, "classify: %s\n", err.msg);
    free(img), free(p);
    vlm_model_close(m);
    return rc;
}
