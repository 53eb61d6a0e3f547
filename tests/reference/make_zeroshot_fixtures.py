"""Zero-shot classifier reference: class embeddings of OpenAI's tiny CLIP
(../shared/reference/openai-clip/tiny.weights.safetensors) built with OpenAI's
recipe (per class: encode every template, normalise each, average, renormalise),
computed by the independent PyTorch model of make_clip_fixtures.py.

The tiny model has a 1000-token vocabulary, so the prompts are tokenised with a
vocabulary trained by `vlm bpe train` (vocab size 1000) and `vlm tokenize`;
the ids are stored so the C test can check its own tokenisation too.

Run (after building): /usr/bin/python3 tests/reference/make_zeroshot_fixtures.py [path/to/vlm]
Writes tests/fixtures/zeroshot/{vocab.txt, classnames.txt, templates.txt, reference.safetensors}.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch

from make_clip_fixtures import CLIP, QuickGELU, load_st, openai_cfg, SHARED
from st import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "zeroshot")
VLM = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "build", "vlm")

CLASSES = ["grinning face", "red apple", "t-shirt/top", "ankle boot", "dog", "face with tears of joy"]
TEMPLATES = ["a photo of a {}.", "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "art of the {}.",
             "a {} in a video game.", "{}"]

os.makedirs(OUT, exist_ok=True)
texts = [t.replace("{}", c) for c in CLASSES for t in TEMPLATES]
corpus = os.path.join(OUT, "corpus.tmp")
with open(corpus, "w") as f:
    f.write("\n".join(texts * 3 + ["a photo of the small thing", "the cartoon shoe", "a sketch of a bag"]) + "\n")
vocab = os.path.join(OUT, "vocab.txt")
subprocess.run([VLM, "bpe", "train", "--input", corpus, "--vocab-size", "1000", "--out", vocab], check=True)
os.remove(corpus)
res = subprocess.run([VLM, "tokenize", "--vocab", vocab, "--context-length", "16", "--truncate"],
                     input="\n".join(texts) + "\n", capture_output=True, text=True, check=True)
ids = np.array([json.loads(l) for l in res.stdout.strip().split("\n")], dtype=np.int64)
assert ids.shape == (len(texts), 16) and ids.max() < 1000

cfg = json.load(open(os.path.join(SHARED, "tiny.json")))
model = CLIP(openai_cfg(cfg), QuickGELU)
model.load_state_dict(load_st(os.path.join(SHARED, "tiny.weights.safetensors")), strict=True)
model.eval()
W = []
with torch.no_grad():
    t = torch.from_numpy(ids)
    for k in range(len(CLASSES)):
        e = model.encode_text(t[k * len(TEMPLATES):(k + 1) * len(TEMPLATES)])
        e = e / e.norm(dim=-1, keepdim=True)
        e = e.mean(dim=0)
        W.append((e / e.norm()).numpy())
W = np.stack(W).astype(np.float32)
with open(os.path.join(OUT, "classnames.txt"), "w") as f:
    f.write("\n".join(CLASSES) + "\n")
with open(os.path.join(OUT, "templates.txt"), "w") as f:
    f.write("\n".join(TEMPLATES) + "\n")
save(os.path.join(OUT, "reference.safetensors"), {"class_embeddings": W, "ids": ids.astype(np.int32)},
     {"torch": torch.__version__})
print("wrote", W.shape)
