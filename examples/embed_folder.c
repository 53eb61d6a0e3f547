// Embed every PNG/JPEG image of a folder: embed_folder MODEL DIR OUT.safetensors
// (an embeddings file `vlm search --index OUT` reads).
#define _POSIX_C_SOURCE 200809L // strdup
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vlm.h>

static int is_image(const char *n) {
    const char *d = strrchr(n, '.');
    return d && (!strcmp(d, ".png") || !strcmp(d, ".jpg") || !strcmp(d, ".jpeg"));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: embed_folder MODEL DIR OUT.safetensors\n");
        return 2;
    }
    vlm_error err = {0};
    vlm_model *m;
    if (vlm_model_open(&m, argv[1], NULL, &err)) return fprintf(stderr, "embed_folder: %s\n", err.msg), 1;
    DIR *d = opendir(argv[2]);
    if (!d) return fprintf(stderr, "embed_folder: cannot open %s\n", argv[2]), vlm_model_close(m), 1;
    vlm_index ix = {.dim = vlm_model_dim(m), .model = argv[1]};
    struct dirent *e;
    int cap = 0, rc = 0;
    while (!rc && (e = readdir(d))) {
        if (!is_image(e->d_name)) continue;
        if (ix.n == cap) {
            cap = cap ? 2 * cap : 64;
            ix.ids = realloc(ix.ids, sizeof(char *) * (size_t)cap);
            ix.emb = realloc(ix.emb, sizeof(float) * (size_t)cap * ix.dim);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[2], e->d_name);
        const char *p = path;
        if (vlm_model_embed_files(m, &p, 1, ix.emb + ix.n * ix.dim, &err)) {
            fprintf(stderr, "embed_folder: skipping %s\n", err.msg);
            continue;
        }
        ix.ids[ix.n++] = strdup(e->d_name);
    }
    closedir(d);
    ix.next = ix.n;
    if (vlm_index_save(&ix, argv[3], &err)) {
        fprintf(stderr, "embed_folder: %s\n", err.msg);
        rc = 1;
    } else printf("embedded %lld images of %s into %s (%d dims)\n", (long long)ix.n, argv[2], argv[3], ix.dim);
    for (int64_t i = 0; i < ix.n; i++) free(ix.ids[i]);
    free(ix.ids), free(ix.emb);
    vlm_model_close(m);
    return rc;
}
