#!/usr/bin/env python3
"""The side-by-side paths of docs/performance.md in plain PyTorch eager, for a reference column where Hugging Face
transformers cannot be installed (this project's machines have Debian's torch but no transformers).

Reference only: CI never runs it. It performs the operations transformers 4.46.3's eager LLaVA code performs, in the
same order and dtypes (CLIP: all 24 layers, as HF computes every hidden state and then picks the feature layer;
projector; Gemma: embedding scaled by sqrt(hidden), RMSNorm in float32 with (1 + weight), RoPE tables per forward,
KV heads repeated, matmul + float32 softmax attention with an additive causal mask, gelu-tanh MLP, tied lm_head,
float32 logits; generation with a concatenating KV cache like DynamicCache) on the random-weight checkpoint
`make-bench-checkpoint` writes. Python-level module overhead is left out, so this is a lower bound on HF's time for
the same work, not HF itself.

  python3 torch_side_by_side.py --model /path/to/benchckpt [--runs 3] [--threads 2]   # JSON on stdout
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

PROMPT_TEXT_TOKENS = 13  # `<bos>` + 576 image tokens + 13 text tokens = 590 positions, as the .NET runner's prompt


def timed(runs, fn):
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


class Model:
    def __init__(self, folder):
        cfg = json.load(open(f"{folder}/config.json"))
        self.v, self.t = cfg["vision_config"], cfg["text_config"]
        self.feature_layer = cfg.get("vision_feature_layer", -2)
        self.w = load_file(f"{folder}/model.safetensors")
        # transformers 4.46 names (language_model.model.*, vision_tower.vision_model.*, multi_modal_projector.*).
        self.vp = "vision_tower.vision_model."
        self.tp = "language_model.model."

    # --- CLIP vision tower -------------------------------------------------------------------------------------
    def vision(self, pixels):
        w, p, v = self.w, self.vp, self.v
        x = F.conv2d(pixels, w[p + "embeddings.patch_embedding.weight"], stride=v["patch_size"])
        x = x.flatten(2).transpose(1, 2)
        cls = w[p + "embeddings.class_embedding"].expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + w[p + "embeddings.position_embedding.weight"].unsqueeze(0)
        x = F.layer_norm(x, (v["hidden_size"],), w[p + "pre_layrnorm.weight"], w[p + "pre_layrnorm.bias"], v["layer_norm_eps"])
        hidden = [x]
        heads = v["num_attention_heads"]
        hd = v["hidden_size"] // heads
        for i in range(v["num_hidden_layers"]):
            q = f"{p}encoder.layers.{i}."
            r = x
            h = F.layer_norm(x, (v["hidden_size"],), w[q + "layer_norm1.weight"], w[q + "layer_norm1.bias"], v["layer_norm_eps"])
            b, n, _ = h.shape
            qs = (F.linear(h, w[q + "self_attn.q_proj.weight"], w[q + "self_attn.q_proj.bias"]) * hd ** -0.5).view(b, n, heads, hd).transpose(1, 2)
            ks = F.linear(h, w[q + "self_attn.k_proj.weight"], w[q + "self_attn.k_proj.bias"]).view(b, n, heads, hd).transpose(1, 2)
            vs = F.linear(h, w[q + "self_attn.v_proj.weight"], w[q + "self_attn.v_proj.bias"]).view(b, n, heads, hd).transpose(1, 2)
            a = torch.softmax(qs @ ks.transpose(-1, -2), dim=-1) @ vs
            a = a.transpose(1, 2).reshape(b, n, -1)
            x = r + F.linear(a, w[q + "self_attn.out_proj.weight"], w[q + "self_attn.out_proj.bias"])
            r = x
            h = F.layer_norm(x, (v["hidden_size"],), w[q + "layer_norm2.weight"], w[q + "layer_norm2.bias"], v["layer_norm_eps"])
            h = F.linear(h, w[q + "mlp.fc1.weight"], w[q + "mlp.fc1.bias"])
            h = h * torch.sigmoid(1.702 * h)
            x = r + F.linear(h, w[q + "mlp.fc2.weight"], w[q + "mlp.fc2.bias"])
            hidden.append(x)
        F.layer_norm(x[:, 0], (v["hidden_size"],), w[p + "post_layernorm.weight"], w[p + "post_layernorm.bias"], v["layer_norm_eps"])
        return hidden[self.feature_layer][:, 1:]

    def image_features(self, pixels):
        w = self.w
        x = self.vision(pixels)
        x = F.gelu(F.linear(x, w["multi_modal_projector.linear_1.weight"], w["multi_modal_projector.linear_1.bias"]))
        return F.linear(x, w["multi_modal_projector.linear_2.weight"], w["multi_modal_projector.linear_2.bias"])

    # --- Gemma ---------------------------------------------------------------------------------------------------
    def rms(self, x, weight):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.t["rms_norm_eps"])
        return (h * (1.0 + weight.float())).type_as(x)

    def embed(self, ids, features, image_positions):
        e = F.embedding(ids, self.w[self.tp + "embed_tokens.weight"])
        if features is not None:
            e = e.clone()
            e[0, image_positions] = features[0].to(e.dtype)
        return e * torch.tensor(self.t["hidden_size"] ** 0.5, dtype=e.dtype)

    def decoder(self, x, start, cache, stop_after=None):
        t, w, p = self.t, self.w, self.tp
        heads, kv, hd = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
        b, n, _ = x.shape
        pos = torch.arange(start, start + n, dtype=torch.float32)
        inv = 1.0 / (t["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        freqs = pos[:, None] * inv[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        total = start + n
        mask = torch.full((n, total), torch.finfo(x.dtype).min, dtype=x.dtype).triu(start + 1)

        def rot(u):
            a, c = u[..., : hd // 2], u[..., hd // 2:]
            return torch.cat([-c, a], dim=-1)

        layers = t["num_hidden_layers"] if stop_after is None else stop_after + 1
        for i in range(layers):
            q = f"{p}layers.{i}."
            r = x
            h = self.rms(x, w[q + "input_layernorm.weight"])
            qs = F.linear(h, w[q + "self_attn.q_proj.weight"]).view(b, n, heads, hd).transpose(1, 2)
            ks = F.linear(h, w[q + "self_attn.k_proj.weight"]).view(b, n, kv, hd).transpose(1, 2)
            vs = F.linear(h, w[q + "self_attn.v_proj.weight"]).view(b, n, kv, hd).transpose(1, 2)
            qs = qs * cos + rot(qs) * sin
            ks = ks * cos + rot(ks) * sin
            if cache is not None:
                if len(cache) > i:
                    ks = torch.cat([cache[i][0], ks], dim=2)
                    vs = torch.cat([cache[i][1], vs], dim=2)
                    cache[i] = (ks, vs)
                else:
                    cache.append((ks, vs))
            ks = ks.repeat_interleave(heads // kv, dim=1)
            vs = vs.repeat_interleave(heads // kv, dim=1)
            s = (qs @ ks.transpose(2, 3)) / math.sqrt(hd) + mask
            a = torch.softmax(s, dim=-1, dtype=torch.float32).to(qs.dtype) @ vs
            a = a.transpose(1, 2).reshape(b, n, -1)
            x = r + F.linear(a, w[q + "self_attn.o_proj.weight"])
            r = x
            h = self.rms(x, w[q + "post_attention_layernorm.weight"])
            h = F.gelu(F.linear(h, w[q + "mlp.gate_proj.weight"]), approximate="tanh") * F.linear(h, w[q + "mlp.up_proj.weight"])
            x = r + F.linear(h, w[q + "mlp.down_proj.weight"])
        return x

    def logits(self, x, keep):
        x = self.rms(x, self.w[self.tp + "norm.weight"])
        if keep:
            x = x[:, -keep:]
        return F.linear(x, self.w[self.tp + "embed_tokens.weight"]).float()

    def forward(self, ids, pixels, image_positions, keep=0, cache=None, stop_after=None):
        features = self.image_features(pixels) if pixels is not None else None
        x = self.embed(ids, features, image_positions)
        start = cache[0][0].shape[2] if cache else 0
        x = self.decoder(x, start, cache, stop_after)
        return None if stop_after is not None else self.logits(x, keep)

    def generate(self, ids, pixels, image_positions, new_tokens):
        cache = []
        logits = self.forward(ids, pixels, image_positions, keep=1, cache=cache)
        token = logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(new_tokens - 1):
            logits = self.forward(token, None, None, keep=1, cache=cache)
            token = logits[:, -1].argmax(-1, keepdim=True)
        return token


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    results["load_s"] = timed(args.runs, lambda: Model(args.model))
    m = Model(args.model)
    size = m.v["image_size"]
    image_tokens = (size // m.v["patch_size"]) ** 2
    positions = 1 + image_tokens + PROMPT_TEXT_TOKENS
    ids = torch.randint(3, 1000, (1, positions))
    ids[0, 0] = m.t["bos_token_id"]
    image_positions = torch.arange(1, 1 + image_tokens)
    pixels = torch.randn(1, 3, size, size)
    with torch.no_grad():
        results["vision_projector_s"] = timed(args.runs, lambda: m.image_features(pixels))
        results["prefill_last_logits_s"] = timed(args.runs, lambda: m.forward(ids, pixels, image_positions, keep=1))
        results["prefill_all_logits_s"] = timed(args.runs, lambda: m.forward(ids, pixels, image_positions, keep=0))
        results["forward_stop_after_block_4_s"] = timed(args.runs, lambda: m.forward(ids, pixels, image_positions, stop_after=4))
        one = timed(args.runs, lambda: m.generate(ids, pixels, image_positions, 1))
        thirty_two = timed(args.runs, lambda: m.generate(ids, pixels, image_positions, 32))
        results["generate32_time_to_first_token_s"] = one
        results["generate32_s"] = thirty_two
        results["decode_step_s"] = [(t - statistics.median(one)) / 31 for t in thirty_two]
        enc_w = torch.randn(m.t["hidden_size"], 16384) * 0.01
        enc_b = torch.zeros(16384)
        dec_b = torch.zeros(m.t["hidden_size"])
        x = torch.randn(positions, m.t["hidden_size"])
        # SAELens's standard encode: relu((x - b_dec) @ W_enc + b_enc).
        results["sae_encode_fp32_s"] = timed(args.runs, lambda: torch.relu((x - dec_b) @ enc_w + enc_b))
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": [line.strip() for line in torch.__config__.show().splitlines() if "BLAS" in line][:2],
        "prompt_positions": positions,
        "runs": {k: [round(t, 4) for t in v] for k, v in results.items()},
        "medians": {k: round(statistics.median(v), 4) for k, v in results.items()},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
