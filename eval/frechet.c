// Fréchet distance between Gaussians fitted to two sets of features (see frechet.h).
#include "eval/frechet.h"
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Cyclic Jacobi: a (symmetric [n, n], destroyed) -> eigenvalues w, eigenvectors
// in the columns of v.
static void jacobi_eig(double *a, int n, double *v, double *w) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) v[(int64_t)i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int p = 0; p < n; p++) {
            diag += a[(int64_t)p * n + p] * a[(int64_t)p * n + p];
            for (int q = p + 1; q < n; q++) off += a[(int64_t)p * n + q] * a[(int64_t)p * n + q];
        }
        if (off <= 1e-26 * (diag > 0 ? diag : 1)) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[(int64_t)p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[(int64_t)q * n + q] - a[(int64_t)p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < n; k++) { // columns p, q
                    double akp = a[(int64_t)k * n + p], akq = a[(int64_t)k * n + q];
                    a[(int64_t)k * n + p] = cs * akp - sn * akq;
                    a[(int64_t)k * n + q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < n; k++) { // rows p, q
                    double apk = a[(int64_t)p * n + k], aqk = a[(int64_t)q * n + k];
                    a[(int64_t)p * n + k] = cs * apk - sn * aqk;
                    a[(int64_t)q * n + k] = sn * apk + cs * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = v[(int64_t)k * n + p], vkq = v[(int64_t)k * n + q];
                    v[(int64_t)k * n + p] = cs * vkp - sn * vkq;
                    v[(int64_t)k * n + q] = sn * vkp + cs * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = a[(int64_t)i * n + i];
}

// Mean [d] and unbiased covariance [d, d] (np.cov) of x: [m, d].
static void moments(const float *x, int64_t m, int d, double *mu, double *cov) {
    for (int j = 0; j < d; j++) {
        double s = 0;
        for (int64_t i = 0; i < m; i++) s += x[i * d + j];
        mu[j] = s / (double)m;
    }
    memset(cov, 0, sizeof(double) * (size_t)d * d);
#pragma omp parallel for schedule(dynamic, 4)
    for (int j = 0; j < d; j++)
        for (int k = j; k < d; k++) {
            double s = 0;
            for (int64_t i = 0; i < m; i++) s += (x[i * d + j] - mu[j]) * (x[i * d + k] - mu[k]);
            cov[(int64_t)j * d + k] = cov[(int64_t)k * d + j] = s / (double)(m - 1);
        }
}

vlm_status vlm_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb, int d, double *fd, vlm_error *err) {
    if (na < 2 || nb < 2 || d < 1)
        return vlm_errorf(err, VLM_ERR_ARG, "frechet distance: needs >= 2 vectors per set (got %" PRId64 " and %" PRId64
                          ") of dimension >= 1 (got %d)", na, nb, d);
    size_t dd = (size_t)d * d;
    double *mua = malloc(sizeof(double) * d), *mub = malloc(sizeof(double) * d), *w = malloc(sizeof(double) * d);
    double *sa = malloc(sizeof(double) * dd), *sb = malloc(sizeof(double) * dd), *v = malloc(sizeof(double) * dd),
           *r = malloc(sizeof(double) * dd), *tmp = malloc(sizeof(double) * dd);
    vlm_status st = VLM_OK;
    if (!mua || !mub || !w || !sa || !sb || !v || !r || !tmp) {
        st = vlm_errorf(err, VLM_ERR_OOM, "frechet distance: out of memory (d = %d)", d);
        goto done;
    }
    moments(a, na, d, mua, sa);
    moments(b, nb, d, mub, sb);
    double tr = 0, mean2 = 0;
    for (int j = 0; j < d; j++) {
        mean2 += (mua[j] - mub[j]) * (mua[j] - mub[j]);
        tr += sa[(int64_t)j * d + j] + sb[(int64_t)j * d + j];
    }
    // r = Sa^1/2 = V diag(sqrt(max(w, 0))) V^T (Sa is destroyed by the solver)
    jacobi_eig(sa, d, v, w);
    for (int j = 0; j < d; j++) w[j] = sqrt(w[j] > 0 ? w[j] : 0);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += v[(int64_t)i * d + k] * w[k] * v[(int64_t)j * d + k];
            r[(int64_t)i * d + j] = s;
        }
    // M = r Sb r (symmetric PSD); tr((Sa Sb)^1/2) = sum sqrt(eig(M))
#pragma omp parallel for schedule(static)
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += r[(int64_t)i * d + k] * sb[(int64_t)k * d + j];
            tmp[(int64_t)i * d + j] = s;
        }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += tmp[(int64_t)i * d + k] * r[(int64_t)k * d + j];
            sa[(int64_t)i * d + j] = s;
        }
    for (int i = 0; i < d; i++) // symmetrise rounding
        for (int j = i + 1; j < d; j++) {
            double m = 0.5 * (sa[(int64_t)i * d + j] + sa[(int64_t)j * d + i]);
            sa[(int64_t)i * d + j] = sa[(int64_t)j * d + i] = m;
        }
    jacobi_eig(sa, d, v, w);
    double trs = 0;
    for (int j = 0; j < d; j++) trs += sqrt(w[j] > 0 ? w[j] : 0);
    *fd = mean2 + tr - 2 * trs;
done:
    free(mua), free(mub), free(w), free(sa), free(sb), free(v), free(r), free(tmp);
    return st;
}
