// vlm: vision-language models in C. The one header a program includes
// (installed as <prefix>/include/vlm/vlm.h; `pkg-config --cflags vlm` or
// find_package(vlm) puts that folder on the include path).
//
//   vlm_model *m;                                    // any weights vlm reads
//   vlm_error err;
//   if (vlm_model_open(&m, "clip.safetensors", NULL, &err)) { puts(err.msg); return 1; }
//   float img[512], probs[3];                        // vlm_model_dim(m) floats
//   vlm_model_embed_files(m, (const char *[]){"cat.jpg"}, 1, img, &err);
//   vlm_model_classify(m, img, (const char *[]){"cat", "dog", "car"}, 3, NULL, 0, probs, &err);
//   vlm_model_close(m);
//
// Every function returns a vlm_status (VLM_OK = 0) and fills a vlm_error
// whose msg names the file, operation or shapes; the library never prints or
// exits. The headers below are the public API, by layer.
#ifndef VLM_H
#define VLM_H

#define VLM_API_VERSION 1

// core: errors, tensors and the autograd context, ops, optimizers, files
#include "core/error.h"
#include "core/tensor.h"
#include "core/ops.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/tensorfile.h"
#include "core/state.h"
// data: images, transforms, datasets, the threaded loader
#include "data/image.h"
#include "data/transform.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/evalread.h"
// text: the CLIP tokenizer (and BPE training)
#include "text/tokenizer.h"
// models: CLIP, import/export of other formats, zero-shot classes, detector, generator
#include "fusion/clip.h"
#include "fusion/checkpoint.h"
#include "fusion/import.h"
#include "fusion/classes.h"
#include "fusion/detection.h"
#include "fusion/generator.h"
#include "vision/classifier.h"
// evaluation
#include "eval/zeroshot.h"
#include "eval/retrieval.h"
#include "eval/classify.h"
#include "eval/linprobe.h"
// training entry points (train/trainer.h: the loop for your own task)
#include "train/trainer.h"
#include "train/pretrain.h"
#include "train/finetune.h"
#include "train/detect.h"
#include "train/generate.h"
// the front door: open a model, embed, classify
#include "api/model.h"
#include "api/index.h"

#endif
