// CoCa's multimodal text decoder (open_clip's MultimodalTransformer): the
// text tower's per-token output goes through L layers of [causal
// self-attention block, cross-attention block over the image tokens], then
// ln_final and a projection to the vocabulary; its next-token loss (the
// caption loss) is added to the contrastive loss (open_clip's default
// weights: caption 2, contrastive 1).
//
//   img   = ln_post(ViT tokens) @ img_proj^T + b        [B, 1+N, W]
//   x     = text tokens (ln_final of the text tower)     [B, T, W]
//   layer i: x = resblock_i(x, causal)
//            x = x + out_proj(MHA(q = ln_1(x), k = v = ln_1_kv(img)))   (cross_attn_i)
//            x = x + mlp(ln_2(x))
//   logits = ln_final(x) @ text_projection               [B, T, V]
//
// Parameter names (open_clip's, under "text_decoder."): resblocks.<i>.*,
// cross_attn.<i>.{ln_1,ln_1_kv,ln_2}.{weight,bias}, cross_attn.<i>.attn.{in_proj_weight,
// in_proj_bias,out_proj.weight,out_proj.bias}, cross_attn.<i>.mlp.{c_fc,c_proj}.*,
// ln_final.{weight,bias}, text_projection [W, V]; plus img_proj.{weight,bias}
// (vlm's: the image tower's width to the decoder's).
#ifndef VLM_FUSION_COCA_H
#define VLM_FUSION_COCA_H

#include "core/rng.h"
#include "core/transformer.h"

typedef struct {
    int width, heads, layers, vocab_size, image_width;
    vlm_act act;
} vlm_mm_cfg;

typedef struct {
    int ln1_w, ln1_b, lnkv_w, lnkv_b, in_w, in_b, out_w, out_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
} vlm_xblock;

typedef struct {
    vlm_mm_cfg cfg;
    vlm_transformer self; // causal blocks, "text_decoder.resblocks.<i>"
    vlm_xblock *x;        // [layers] cross-attention blocks
    int img_w, img_b, ln_w, ln_b, proj;
} vlm_mm_decoder;

// Registers the decoder's parameters in ps (before vlm_params_alloc).
vlm_status vlm_mm_init(vlm_mm_decoder *d, vlm_params *ps, vlm_mm_cfg cfg, vlm_error *err);
void vlm_mm_free(vlm_mm_decoder *d);
void vlm_mm_init_weights(const vlm_mm_decoder *d, vlm_params *ps, vlm_rng *rng);

// One cross-attention block: x [B, T, W] attends to kv [B, N, W] (no mask).
vlm_tensor *vlm_xblock_forward(vlm_ctx *c, const vlm_xblock *b, vlm_params *ps, int heads, vlm_act act, vlm_tensor *x,
                               vlm_tensor *kv);
// text [B, T, W] (the text tower's tokens), img [B, M, image_width] (ln_post
// of the image tokens) -> logits [B, T, V].
vlm_tensor *vlm_mm_forward(vlm_ctx *c, const vlm_mm_decoder *d, vlm_params *ps, vlm_tensor *text, vlm_tensor *img);
// Caption loss: mean next-token cross-entropy of logits [B, T, V] against
// ids [B, T]: position t predicts ids[t+1] for t+1 <= eot[b] (the row's EOT
// position); later positions (padding) are ignored.
vlm_tensor *vlm_caption_loss(vlm_ctx *c, vlm_tensor *logits, const int32_t *ids, const int32_t *eot, int B, int T);

#endif
