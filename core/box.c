// Axis-aligned boxes: format conversion, IoU and GIoU (see box.h).
#include "core/box.h"
#include <math.h>
#include <stddef.h>

void vlm_box_cxcywh_to_xyxy(const float b[4], double o[4]) {
    double cx = b[0], cy = b[1], w = b[2], h = b[3];
    o[0] = cx - 0.5 * w;
    o[1] = cy - 0.5 * h;
    o[2] = cx + 0.5 * w;
    o[3] = cy + 0.5 * h;
}

double vlm_box_giou_xyxy_grad(const double a[4], const double b[4], double *iou_out, double *ga, double scale) {
    double iw_raw = fmin(a[2], b[2]) - fmax(a[0], b[0]), ih_raw = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double iw = iw_raw > 0 ? iw_raw : 0, ih = ih_raw > 0 ? ih_raw : 0;
    double aw = a[2] - a[0], ah = a[3] - a[1], bw = b[2] - b[0], bh = b[3] - b[1];
    double I = iw * ih, U = aw * ah + bw * bh - I;
    double cw = fmax(a[2], b[2]) - fmin(a[0], b[0]), ch = fmax(a[3], b[3]) - fmin(a[1], b[1]);
    double C = cw * ch;
    double iou = U > 0 ? I / U : 0;
    double giou = C > 0 ? iou - (C - U) / C : iou;
    if (iou_out) *iou_out = iou;
    if (!ga) return giou;
    double dI = 0, dU = 0, dC = 0;
    if (U > 0) {
        dI += 1.0 / U;
        dU -= I / (U * U);
    }
    if (C > 0) {
        dU += 1.0 / C;
        dC -= U / (C * C);
    }
    dI -= dU; // U = area_a + area_b - I
    double dA = dU, g[4] = {0, 0, 0, 0};
    // area_a = (x1 - x0) (y1 - y0)
    g[2] += dA * ah, g[0] -= dA * ah;
    g[3] += dA * aw, g[1] -= dA * aw;
    // I = iw ih, iw = max(0, min(x1) - max(x0))
    if (iw_raw > 0) {
        double d = dI * ih;
        if (a[2] <= b[2]) g[2] += d;
        if (a[0] >= b[0]) g[0] -= d;
    }
    if (ih_raw > 0) {
        double d = dI * iw;
        if (a[3] <= b[3]) g[3] += d;
        if (a[1] >= b[1]) g[1] -= d;
    }
    // C = cw ch, cw = max(x1) - min(x0)
    double dcw = dC * ch, dch = dC * cw;
    if (a[2] >= b[2]) g[2] += dcw;
    if (a[0] <= b[0]) g[0] -= dcw;
    if (a[3] >= b[3]) g[3] += dch;
    if (a[1] <= b[1]) g[1] -= dch;
    for (int k = 0; k < 4; k++) ga[k] += scale * g[k];
    return giou;
}

double vlm_box_iou_xyxy(const double a[4], const double b[4]) {
    double iou;
    vlm_box_giou_xyxy_grad(a, b, &iou, NULL, 0);
    return iou;
}
double vlm_box_giou_xyxy(const double a[4], const double b[4]) { return vlm_box_giou_xyxy_grad(a, b, NULL, NULL, 0); }
double vlm_box_iou_cxcywh(const float a[4], const float b[4]) {
    double x[4], y[4];
    vlm_box_cxcywh_to_xyxy(a, x);
    vlm_box_cxcywh_to_xyxy(b, y);
    return vlm_box_iou_xyxy(x, y);
}
double vlm_box_giou_cxcywh(const float a[4], const float b[4]) {
    double x[4], y[4];
    vlm_box_cxcywh_to_xyxy(a, x);
    vlm_box_cxcywh_to_xyxy(b, y);
    return vlm_box_giou_xyxy(x, y);
}

double vlm_box_iou_xywh(const double d[4], const double g[4], int crowd) {
    double ga = g[2] * g[3], da = d[2] * d[3];
    double w = fmin(d[2] + d[0], g[2] + g[0]) - fmax(d[0], g[0]);
    if (w <= 0) return 0;
    double h = fmin(d[3] + d[1], g[3] + g[1]) - fmax(d[1], g[1]);
    if (h <= 0) return 0;
    double i = w * h, u = crowd ? da : da + ga - i;
    return i / u;
}
