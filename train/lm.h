// Language-model pretraining on the trainer layer (vlm lm train): the text
// tower pretrained alone with BERT's masked-token objective (mlm) or GPT's
// next-token objective (clm) on a text corpus, with every trainer's resume,
// metrics, plots, time budget and data parallelism.
#ifndef VLM_TRAIN_LM_H
#define VLM_TRAIN_LM_H
#include "eval/lm_eval.h"
#include "train/trainer.h"

typedef struct {
    vlm_train_common c;
    const char *train, *val;   // text files or datasets (their captions)
    const char *objective;     // "mlm" | "clm"
    const char *model;         // preset: micro | tiny | small
    const char *tokenizer;     // BPE merges file; NULL: train one of vocab_size on the training text
    const char *caption_key;   // manifests: the caption column (default title)
    long long context, vocab_size;
    double mask_prob;
} vlm_lm_opts;

// tiny, clm, context 32, vocab 8192; batch 64, lr 5e-4 cosine after 200
// warmup steps, wd 0.1, 10 epochs, log every 20, save every 500.
void vlm_lm_opts_default(vlm_lm_opts *o);
vlm_status vlm_lm_opts_check(const vlm_lm_opts *o, vlm_error *err);

typedef struct {
    int64_t steps, rows, tokens; // optimizer steps; training rows and tokens
    double minutes, loss;
    int have_val;
    vlm_lm_eval_result val;      // the held-out figures at the end (have_val)
    char checkpoint[1300];
} vlm_lm_result;

vlm_status vlm_lm_train(const vlm_lm_opts *o, vlm_lm_result *r, vlm_error *err);

#endif
