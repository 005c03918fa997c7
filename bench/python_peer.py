#!/usr/bin/env python3
"""The Python peer for ViT Studio's training benchmark: the same ViT in Debian's python3-torch.

An independent PyTorch implementation of the model in model/vit.cpp (timm's layout: conv patch
embedding, class token, pre-norm blocks with fused qkv, GELU MLP, final LayerNorm, linear head),
trained with AdamW + cross-entropy with label smoothing + grad-norm clipping on random tensors, so
that only the training step is timed (data loading excluded), as `vit train` reports it.

Usage: python_peer.py --preset keras-cifar --batch-size 256 --steps 20 [--threads 2] [--bf16]
--bf16 runs the forward pass under torch.autocast("cpu", dtype=torch.bfloat16), as
`vit train --precision bf16` does; the loss, weights and optimizer stay float.
Prints one JSON line: images_per_second, seconds_per_step, params.
Run it with GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736
(bench/train_vs_python.sh does) so glibc does not unmap and re-fault buffers every step.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    # image, patch, channels, classes, dim, depth, heads, mlp hidden, gelu after fc2, dropout,
    # pooling (the class token, or the mean of the patch tokens with fc_norm as timm's avg pool)
    "keras-cifar": dict(image=72, patch=6, ch=3, classes=10, dim=64, depth=8, heads=4, hidden=128,
                        act2=True, drop=0.1, pool="token"),
    "fmnist-small": dict(image=28, patch=7, ch=1, classes=10, dim=128, depth=4, heads=4, hidden=256,
                         act2=False, drop=0.0, pool="mean"),
    "vit-ti16": dict(image=224, patch=16, ch=3, classes=1000, dim=192, depth=12, heads=3,
                     hidden=768, act2=False, drop=0.0, pool="token"),
    "vit-b16": dict(image=224, patch=16, ch=3, classes=1000, dim=768, depth=12, heads=12,
                    hidden=3072, act2=False, drop=0.0, pool="token"),
}


class Attention(nn.Module):
    def __init__(self, dim, heads, drop):
        super().__init__()
        self.heads, self.scale, self.drop = heads, (dim // heads) ** -0.5, drop
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        return F.dropout(self.proj(x), self.drop, self.training)


class Block(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.norm1 = nn.LayerNorm(p["dim"], eps=1e-6)
        self.attn = Attention(p["dim"], p["heads"], p["drop"])
        self.norm2 = nn.LayerNorm(p["dim"], eps=1e-6)
        self.fc1 = nn.Linear(p["dim"], p["hidden"])
        self.fc2 = nn.Linear(p["hidden"], p["dim"])
        self.act2, self.drop = p["act2"], p["drop"]

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        h = F.dropout(F.gelu(self.fc1(self.norm2(x))), self.drop, self.training)
        h = self.fc2(h)
        if self.act2:
            h = F.gelu(h)
        return x + F.dropout(h, self.drop, self.training)


class ViT(nn.Module):
    def __init__(self, p):
        super().__init__()
        n = (p["image"] // p["patch"]) ** 2
        self.proj = nn.Conv2d(p["ch"], p["dim"], p["patch"], p["patch"])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, p["dim"]))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, p["dim"]) * 0.02)
        self.blocks = nn.Sequential(*[Block(p) for _ in range(p["depth"])])
        self.norm = nn.LayerNorm(p["dim"], eps=1e-6)
        self.head = nn.Linear(p["dim"], p["classes"])
        self.drop, self.pool = p["drop"], p["pool"]

    def forward(self, x):
        x = self.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        x = self.blocks(F.dropout(x, self.drop, self.training))
        if self.pool == "mean":  # timm's global_pool="avg": mean of the patch tokens, then fc_norm
            return self.head(self.norm(x[:, 1:].mean(1)))
        return self.head(self.norm(x)[:, 0])


def infer(p, args):
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = ViT(p).eval().to(dtype)
    x = torch.randn(args.batch_size, p["ch"], p["image"], p["image"]).to(dtype)
    times = []
    with torch.inference_mode():
        for step in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            model(x).float()
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"peer": "python3-torch " + torch.__version__, "preset": args.preset,
                      "mode": "inference", "precision": "bf16" if args.bf16 else "fp32",
                      "threads": torch.get_num_threads(), "batch_size": args.batch_size,
                      "runs": len(times), "latency_ms": median * 1e3,
                      "images_per_second": args.batch_size / median}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="keras-cifar", choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--infer", action="store_true",
                    help="time inference forward passes (eval mode, no autograd) instead of training; "
                         "with --bf16 the weights and input are converted to bfloat16 once, as "
                         "`vit summary --benchmark --precision bf16` does")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or len(__import__("os").sched_getaffinity(0)))
    torch.manual_seed(0)
    p = PRESETS[args.preset]
    if args.infer:
        return infer(p, args)
    model = ViT(p).train()
    decay = [t for n, t in model.named_parameters() if t.dim() >= 2 and n not in ("pos_embed", "cls_token")]
    no_decay = [t for n, t in model.named_parameters() if not (t.dim() >= 2 and n not in ("pos_embed", "cls_token"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    x = torch.randn(args.batch_size, p["ch"], p["image"], p["image"])
    y = torch.randint(0, p["classes"], (args.batch_size,))
    times = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    per_step = sum(times) / len(times)
    print(json.dumps({"peer": "python3-torch " + torch.__version__, "preset": args.preset,
                      "precision": "bf16" if args.bf16 else "fp32",
                      "threads": torch.get_num_threads(), "batch_size": args.batch_size,
                      "steps": len(times), "seconds_per_step": per_step,
                      "images_per_second": args.batch_size / per_step,
                      "params": sum(t.numel() for t in model.parameters())}))


if __name__ == "__main__":
    main()
