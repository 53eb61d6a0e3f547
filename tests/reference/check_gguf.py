"""Independent GGUF reader (written from ggml's docs/gguf.md, version 3) that
checks a CLIP GGUF file vlm wrote against the same model's Hugging Face
safetensors: header, alignment, key types, every tensor's name (clip.cpp's
naming of the HF name), dims (numpy shape reversed), type and values.

usage: python3 tests/reference/check_gguf.py MODEL.gguf HF_FOLDER   (exit 0 = all match)
"""
import json
import struct
import sys


def read_st(path):
    """{name: (shape, [f32 values])} of an F32 safetensors file (the standard library only)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    d = b[8 + n:]
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = (list(v["shape"]), struct.unpack("<%df" % ((e - s) // 4), d[s:e]))
    return out


def gguf_name(hf):
    if "projection" in hf:
        return hf
    for a, b in [("text_model", "t"), ("vision_model", "v"), ("encoder.layers", "blk"), ("embeddings.", ""),
                 ("_proj", ""), ("self_attn.", "attn_"), ("layer_norm", "ln"), ("layernorm", "ln"),
                 ("mlp.fc1", "ffn_down"), ("mlp.fc2", "ffn_up"), ("embedding", "embd"), ("final", "post"),
                 ("layrnorm", "ln")]:
        hf = hf.replace(a, b)
    return hf


class R:
    def __init__(self, b):
        self.b, self.o = b, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.o)
        self.o += struct.calcsize("<" + fmt)
        return v[0]

    def s(self):
        n = self.take("Q")
        v = self.b[self.o:self.o + n].decode()
        self.o += n
        return v

    def value(self, t):
        fmts = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
        if t == 8:
            return self.s()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return [self.value(et) for _ in range(n)]
        return self.take(fmts[t])


def main(gguf, hf_dir):
    b = open(gguf, "rb").read()
    r = R(b)
    assert b[:4] == b"GGUF", "magic"
    r.o = 4
    assert r.take("I") == 3, "version"
    nt, nkv = r.take("Q"), r.take("Q")
    kv, types = {}, {}
    for _ in range(nkv):
        k = r.s()
        t = r.take("I")
        types[k] = t
        kv[k] = r.value(t)
    want = {"general.architecture": 8, "clip.has_text_encoder": 7, "clip.has_vision_encoder": 7, "general.file_type": 4,
            "general.description": 8, "clip.text.embedding_length": 4, "clip.vision.image_size": 4,
            "clip.vision.image_mean": 9, "clip.use_gelu": 7, "clip.vision.attention.layer_norm_epsilon": 6}
    for k, t in want.items():
        assert types.get(k) == t, f"key {k}: type {types.get(k)}, want {t}"
    align = kv.get("general.alignment", 32)
    infos = []
    for _ in range(nt):
        name = r.s()
        nd = r.take("I")
        ne = [r.take("Q") for _ in range(nd)]
        infos.append((name, ne, r.take("I"), r.take("Q")))
    data = (r.o + align - 1) // align * align
    hf = read_st(hf_dir + "/model.safetensors")
    expect = {gguf_name(k): v for k, v in hf.items() if k != "logit_scale"}
    assert len(infos) == len(expect), f"{len(infos)} tensors, want {len(expect)}"
    f16 = kv["general.file_type"] == 1
    off = 0
    for name, ne, ty, o in infos:
        assert o == off, f"{name}: offset {o}, want {off} (packed, aligned)"
        shape, ref = expect[name]
        assert list(ne) == shape[::-1], f"{name}: ne {ne} vs shape {shape}"
        n = 1
        for v in ne:
            n *= v
        x = struct.unpack_from("<%d%s" % (n, "e" if ty == 1 else "f"), b, data + o)
        is16 = f16 and (len(shape) == 4 or (len(shape) == 2 and name.endswith(".weight")))
        assert ty == (1 if is16 else 0), f"{name}: type {ty}"
        tol = 1e-3 * max(abs(v) for v in ref) if is16 else 0
        assert max(abs(a - c) for a, c in zip(x, ref)) <= tol, f"{name}: values differ"
        off += (n * (2 if ty == 1 else 4) + align - 1) // align * align
    print(f"check_gguf: {gguf}: {nt} tensors, {nkv} keys match {hf_dir}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
