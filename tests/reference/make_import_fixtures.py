"""Fixtures for importing other people's CLIP weights (fusion/import.h), made
with Debian's torch and the independent CLIP of make_clip_fixtures.py (OpenAI's
architecture and parameter names):

  openai_micro.pt          torch.jit.trace'd and torch.jit.save'd with OpenAI's
                           convert_weights dtypes (conv/linear/attention weights,
                           text_projection and proj in fp16, the rest fp32), as
                           OpenAI's released .pt files are
  openclip_micro.pt        torch.save({"epoch", "name", "state_dict" (keys with
                           "module."), "optimizer"}) as open_clip's training saves
  hf_micro/                Hugging Face CLIPModel folder: config.json +
                           model.safetensors with HF names (q/k/v split,
                           projections transposed), F32
  openclip_hub_micro/      open_clip hub folder: open_clip_config.json +
                           open_clip_model.safetensors (F16 where OpenAI's are fp16)
  micro.io.safetensors     image [B,3,S,S], text [B,T] (I32) and the reference
                           image_features / text_features of the fp16-rounded weights

Run: /usr/bin/python3 tests/reference/make_import_fixtures.py
"""
import copy
import json
import math
import os
import struct
import zipfile

import numpy as np
import torch

from make_clip_fixtures import CLIP, QuickGELU
from st import save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "import")

CFG = {"embed_dim": 32, "image_resolution": 16, "vision_layers": 2, "vision_width": 64, "vision_patch_size": 8,
       "vision_heads": 1, "context_length": 8, "vocab_size": 300, "transformer_width": 128, "transformer_heads": 2,
       "transformer_layers": 1}


def is_half(name):
    """OpenAI's convert_weights: conv, linear and attention weights/biases, text_projection, proj."""
    if name in ("text_projection", "visual.proj"):
        return True
    if name.endswith("conv1.weight") or "attn.in_proj" in name or "attn.out_proj" in name:
        return True
    return "mlp.c_fc" in name or "mlp.c_proj" in name


def hf_name(n):
    """OpenAI state-dict name -> Hugging Face CLIPModel name (q/k/v split elsewhere)."""
    m = {"token_embedding.weight": "text_model.embeddings.token_embedding.weight",
         "positional_embedding": "text_model.embeddings.position_embedding.weight",
         "ln_final.weight": "text_model.final_layer_norm.weight", "ln_final.bias": "text_model.final_layer_norm.bias",
         "visual.class_embedding": "vision_model.embeddings.class_embedding",
         "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
         "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
         "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight", "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
         "visual.ln_post.weight": "vision_model.post_layernorm.weight",
         "visual.ln_post.bias": "vision_model.post_layernorm.bias", "logit_scale": "logit_scale"}
    if n in m:
        return m[n]
    tower = "vision_model" if n.startswith("visual.") else "text_model"
    n = n[len("visual."):] if n.startswith("visual.") else n
    parts = n.split(".")  # transformer.resblocks.i.<rest>
    i, rest = parts[2], ".".join(parts[3:])
    rest = {"attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
            "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias", "ln_2.weight": "layer_norm2.weight",
            "ln_2.bias": "layer_norm2.bias", "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
            "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias"}[rest]
    return f"{tower}.encoder.layers.{i}.{rest}"


def save_mixed(path, tensors):
    """safetensors with F16 tensors where given as float16 arrays."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dt = {np.dtype("float32"): "F32", np.dtype("float16"): "F16"}[arr.dtype]
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    torch.manual_seed(3)
    os.makedirs(OUT, exist_ok=True)
    model = CLIP(CFG, QuickGELU)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n == "logit_scale":
                continue
            if "ln" in n and n.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.ndim < 2:
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))
            if is_half(n):  # the values OpenAI's fp16 files hold
                p.copy_(p.half().float())
    model.eval()
    B, S, T, V = 3, CFG["image_resolution"], CFG["context_length"], CFG["vocab_size"]
    image = torch.randn(B, 3, S, S)
    text = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        L = [3, 5, T][b]
        text[b, 0] = V - 2
        text[b, 1:L - 1] = torch.randint(1, V - 2, (L - 2,))
        text[b, L - 1] = V - 1
    with torch.no_grad():
        fi, ft = model.visual(image), model.encode_text(text)
    save(os.path.join(OUT, "micro.io.safetensors"),
         {"image": image.numpy(), "text": text.int().numpy(), "image_features": fi.numpy(),
          "text_features": ft.numpy()}, {"torch": torch.__version__})
    sd = {n: p.detach().clone() for n, p in model.named_parameters()}

    # OpenAI: a traced module, then its weights to fp16 as convert_weights does
    traced = torch.jit.trace(copy.deepcopy(model), (image, text), check_trace=False)
    with torch.no_grad():
        for n, p in traced.named_parameters():
            if is_half(n):
                p.data = p.data.half()
    torch.jit.save(traced, os.path.join(OUT, "openai_micro.pt"))

    # open_clip: torch.save of epoch, name, a DDP-wrapped state dict and the optimizer
    # (a small stand-in for the optimizer state: nested dicts with integer keys, tuples, tensors)
    opt = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(4)}},
           "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.98), "params": [0]}]}
    torch.save({"epoch": 3, "name": "micro-quickgelu", "state_dict": {"module." + k: v for k, v in sd.items()},
                "optimizer": opt}, os.path.join(OUT, "openclip_micro.pt"))

    # Hugging Face CLIPModel folder
    hf = {}
    for n, v in sd.items():
        a = v.numpy()
        if n in ("text_projection", "visual.proj"):
            hf["text_projection.weight" if n == "text_projection" else "visual_projection.weight"] = a.T.copy()
        elif n.endswith("attn.in_proj_weight") or n.endswith("attn.in_proj_bias"):
            base = hf_name(n.replace("attn.in_proj_weight", "attn.out_proj.weight").replace(
                "attn.in_proj_bias", "attn.out_proj.bias")).replace("out_proj", "{}_proj")
            for k, part in zip("qkv", np.split(a, 3, axis=0)):
                hf[base.format(k)] = part.copy()
        elif n == "visual.class_embedding":
            hf[hf_name(n)] = a
        else:
            hf[hf_name(n)] = a
    d = os.path.join(OUT, "hf_micro")
    os.makedirs(d, exist_ok=True)
    save(os.path.join(d, "model.safetensors"), hf, {"format": "pt"})
    E, Wv, Wt = CFG["embed_dim"], CFG["vision_width"], CFG["transformer_width"]
    cfg = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": E,
           "logit_scale_init_value": 2.6592,
           "text_config": {"hidden_size": Wt, "intermediate_size": 4 * Wt, "num_attention_heads": CFG["transformer_heads"],
                           "num_hidden_layers": CFG["transformer_layers"], "max_position_embeddings": T,
                           "vocab_size": V, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": E},
           "vision_config": {"hidden_size": Wv, "intermediate_size": 4 * Wv, "num_attention_heads": CFG["vision_heads"],
                             "num_hidden_layers": CFG["vision_layers"], "image_size": S,
                             "patch_size": CFG["vision_patch_size"], "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                             "num_channels": 3, "projection_dim": E}}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    # open_clip hub folder
    d = os.path.join(OUT, "openclip_hub_micro")
    os.makedirs(d, exist_ok=True)
    save_mixed(os.path.join(d, "open_clip_model.safetensors"),
               {n: (v.numpy().astype(np.float16) if is_half(n) else v.numpy()) for n, v in sd.items()})
    oc = {"model_cfg": {"embed_dim": E, "quick_gelu": True,
                        "vision_cfg": {"image_size": S, "layers": CFG["vision_layers"], "width": Wv,
                                       "patch_size": CFG["vision_patch_size"]},
                        "text_cfg": {"context_length": T, "vocab_size": V, "width": Wt,
                                     "heads": CFG["transformer_heads"], "layers": CFG["transformer_layers"]}},
          "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}}
    with open(os.path.join(d, "open_clip_config.json"), "w") as f:
        json.dump(oc, f, indent=1)

    # hostile archives: a pickle calling os.system, one reaching past its storage
    with zipfile.ZipFile(os.path.join(OUT, "evil_global.pt"), "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.")
    with zipfile.ZipFile(os.path.join(OUT, "evil_eval.pt"), "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.")
    pkl = (b"\x80\x02}X\x01\x00\x00\x00w"  # {"w": _rebuild_tensor_v2(storage(4 floats), 2, (4,), (1,))}
           b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000"
           b"X\x03\x00\x00\x00cpuK\x04tQK\x02K\x04\x85K\x01\x85\x89)tRs.")
    with zipfile.ZipFile(os.path.join(OUT, "evil_dtype.pt"), "w") as z:  # a storage type no state dict of floats has
        z.writestr("archive/data.pkl", pkl.replace(b"torch\nFloatStorage", b"torch\nComplexFloatStorage"))
        z.writestr("archive/data/0", np.arange(4, dtype=np.float32).tobytes())
    with zipfile.ZipFile(os.path.join(OUT, "evil_offset.pt"), "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", np.arange(4, dtype=np.float32).tobytes())
    with zipfile.ZipFile(os.path.join(OUT, "evil_short.pt"), "w") as z:  # storage data shorter than declared
        z.writestr("archive/data.pkl", pkl.replace(b"K\x02K\x04\x85", b"K\x00K\x04\x85"))
        z.writestr("archive/data/0", np.arange(2, dtype=np.float32).tobytes())
    good = pkl.replace(b"K\x02K\x04\x85", b"K\x00K\x04\x85")
    with zipfile.ZipFile(os.path.join(OUT, "tiny_ok.pt"), "w") as z:
        z.writestr("archive/data.pkl", good)
        z.writestr("archive/data/0", np.arange(4, dtype=np.float32).tobytes())
    with zipfile.ZipFile(os.path.join(OUT, "bomb.pt"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", good)
        z.writestr("archive/data/0", b"\0" * (64 << 20))  # 64 MB of zeros in ~64 kB
    print("wrote", OUT, sorted(os.listdir(OUT)))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
