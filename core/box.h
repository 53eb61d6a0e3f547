// Axis-aligned boxes, the one place IoU is defined: format conversion, IoU
// and generalized IoU of (x0, y0, x1, y1) and (cx, cy, w, h) boxes with the
// GIoU gradient the detection loss needs, and COCO's (x, y, w, h) IoU with
// crowd regions for the evaluator and the scene generator.
#ifndef VLM_CORE_BOX_H
#define VLM_CORE_BOX_H

// (cx, cy, w, h) -> (x0, y0, x1, y1).
void vlm_box_cxcywh_to_xyxy(const float cxcywh[4], double xyxy[4]);
// IoU and generalized IoU of two (x0, y0, x1, y1) boxes (x1 >= x0, y1 >= y0).
// A zero union gives IoU 0; a zero enclosing box gives GIoU = IoU.
double vlm_box_iou_xyxy(const double a[4], const double b[4]);
double vlm_box_giou_xyxy(const double a[4], const double b[4]);
// GIoU (returned) and IoU (*iou_out, may be NULL) of xyxy boxes a, b; with ga
// non-NULL, adds d GIoU / d a (a's four xyxy coordinates) times `scale` into
// ga. At ties between edges the subgradient goes to a.
double vlm_box_giou_xyxy_grad(const double a[4], const double b[4], double *iou_out, double *ga, double scale);
// The same for (cx, cy, w, h) boxes.
double vlm_box_iou_cxcywh(const float a[4], const float b[4]);
double vlm_box_giou_cxcywh(const float a[4], const float b[4]);
// COCO's bbIou for (x, y, w, h) boxes d (detection) and g (ground truth):
// intersection over union, or over d's area when g is a crowd region; 0
// without overlap.
double vlm_box_iou_xywh(const double d[4], const double g[4], int crowd);

#endif
