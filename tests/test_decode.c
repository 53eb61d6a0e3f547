// Greedy and beam-search decoding (text/decode.h) on a hand-made Markov
// model whose best sequence is known: greedy takes the likelier first token
// and ends worse; beam search (2 beams) finds the best; banned tokens are
// never produced; the length limit ends a sequence; a failing model's error
// comes back.
#include <math.h>
#include <string.h>
#include "text/decode.h"
#include "tests/testutil.h"

enum { S = 0, E = 1, A = 2, B = 3, V = 4 };

// P(next | last): from S: a .6, b .4; after a: end .35, a .33, b .32;
// after b: end .9, a .05, b .05. Best: S b E (.36); greedy: S a E (.21).
static const double P[V][V] = {
    [S] = {0, 0, .6, .4},
    [A] = {0, .35, .33, .32},
    [B] = {0, .9, .05, .05},
    [E] = {0, 1, 0, 0},
};

static int calls;

static int markov(void *user, const int32_t *pre, int n, int len, float *logp, vlm_error *err) {
    (void)user;
    calls++;
    if (len > 50) return vlm_errorf(err, VLM_ERR_STATE, "model broke at length %d", len), 1;
    for (int i = 0; i < n; i++)
        for (int v = 0; v < V; v++) {
            double p = P[pre[i * len + len - 1]][v];
            logp[i * V + v] = p > 0 ? (float)log(p) : -INFINITY;
        }
    return 0;
}

int main(void) {
    vlm_seqdec_opts o;
    vlm_seqdec_opts_default(&o, S, E, 10);
    int32_t out[64];
    int len = 0;
    float score;
    vlm_error err = {0};
    CHECK(vlm_seq_decode(markov, NULL, V, &o, out, &len, &score, &err) == VLM_OK, "%s", err.msg);
    CHECK(len == 3 && out[0] == S && out[1] == A && out[2] == E, "greedy: len %d, %d %d %d", len, out[0], out[1], out[2]);
    CHECK(fabsf(score - logf(0.21f)) < 1e-5f, "greedy score %g", score);
    o.beams = 2;
    CHECK(vlm_seq_decode(markov, NULL, V, &o, out, &len, &score, &err) == VLM_OK, "%s", err.msg);
    CHECK(len == 3 && out[1] == B && out[2] == E, "beam 2: len %d, %d %d %d", len, out[0], out[1], out[2]);
    CHECK(fabsf(score - logf(0.36f)) < 1e-5f, "beam score %g, want log .36", score);
    o.beams = 4;
    CHECK(vlm_seq_decode(markov, NULL, V, &o, out, &len, &score, &err) == VLM_OK && out[1] == B && len == 3,
          "beam 4: %d", out[1]);
    // banning b: the best left is S a E
    int32_t ban[1] = {B};
    o.banned = ban, o.n_banned = 1, o.beams = 3;
    CHECK(vlm_seq_decode(markov, NULL, V, &o, out, &len, &score, &err) == VLM_OK && out[1] == A && len == 3,
          "banned b: %d", out[1]);
    // banning the end too: the length limit ends it, all a's
    int32_t ban2[2] = {B, E};
    o.banned = ban2, o.n_banned = 2, o.beams = 1, o.max_len = 6;
    CHECK(vlm_seq_decode(markov, NULL, V, &o, out, &len, &score, &err) == VLM_OK && len == 6, "len %d", len);
    for (int i = 1; i < len; i++) CHECK(out[i] == A, "token %d = %d", i, out[i]);
    // the model's error is returned
    o.n_banned = 2, o.max_len = 60;
    CHECK(vlm_seq_decode(markov, NULL, V, &o, out, &len, &score, &err) == VLM_ERR_STATE && strstr(err.msg, "broke"),
          "%s", err.msg);
    CHECK(calls > 5, "calls %d", calls);
    return tu_done("test_decode");
}
