#!/usr/bin/env python3
"""Runs clip-handid's benchmarks and the same workloads in PyTorch, in one session, and prints
per workload our throughput, PyTorch's and the ratio (ours / PyTorch; > 1 means we are faster).

    python scripts/bench/pytorch_compare.py                    # CPU, all workloads, all cores
    python scripts/bench/pytorch_compare.py --threads 2 --memory --json results.json
    python scripts/bench/pytorch_compare.py --threads 2 --repeat 3     # a machine whose speed drifts
    python scripts/bench/pytorch_compare.py --device cuda --rust-features cuda --batch-infer 256 \
        --batch-train 20 --bf16                                # a GPU machine

Workloads (criterion ids of `cargo bench`, see benches/*.rs):
  image_encoder/{vit-b-16,rn50}/b{1,8}, image_encoder/rn50-reid/b8   inference, 224 x 224
  text_encoder/b8                                                    inference, 77 tokens (and PyTorch on the used tokens)
  train_step/{vit-b-16,rn50}/b4                                      one CLIP-HandID step
  pipeline/reid-224/{1-thread,all-threads}                           decode 1600x1200 JPEG + resize
  metrics/5x10 from similarities                                     the protocol's metrics, 50 runs

PyTorch side: open_clip models with random init (`create_model(..., pretrained=None)`, the
`-quickgelu` variants that match OpenAI's checkpoints), fp32, `torch.inference_mode()` for
inference, `torch.set_num_threads(threads)`; ours runs with `RAYON_NUM_THREADS=threads`.
The CLIP-HandID step in PyTorch follows docs/METHOD.md (re-ID image encoder, BN necks with frozen
bias, bias-free classifiers, inversion network, pseudo-token through the frozen text encoder,
label-smoothed CE + supervised contrastive losses, Adam with two learning-rate groups).

Needs: torch, open_clip_torch, pillow, numpy (scripts/fixtures/requirements.txt), and cargo.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMAGE_WORKLOADS = [("vit-b-16", 1), ("vit-b-16", 8), ("rn50", 1), ("rn50", 8), ("rn50-reid", 8)]
TRAIN_BACKBONES = ["vit-b-16", "rn50"]
CLASSES = 100


# ------------------------------------------------------------------------------------------
# PyTorch workloads
# ------------------------------------------------------------------------------------------

def open_clip_model(backbone):
    import open_clip
    name = {"vit-b-16": "ViT-B-16-quickgelu", "rn50": "RN50-quickgelu", "rn50-reid": "RN50-quickgelu"}[backbone]
    model = open_clip.create_model(name, pretrained=None)
    if backbone == "rn50-reid":
        make_resnet_reid(model)
    return model.eval()


def make_resnet_reid(model, image_size=224):
    """layer4 stride 1 and the attention-pool grid resized to image_size / 16 (CLIP-ReID)."""
    import torch
    from torch import nn
    vis = model.visual
    blk = vis.layer4[0]
    blk.avgpool = nn.Identity()
    blk.downsample._modules["-1"] = nn.Identity()
    blk.stride = 1
    grid = image_size // 16
    width = vis.attnpool.positional_embedding.shape[1]
    vis.attnpool.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) / width ** 0.5)
    return model


def timed(fn, sync, min_seconds, min_runs, warmup):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class HandIdTorch:
    """CLIP-HandID's training forward pass and losses (docs/METHOD.md sections 1 and 2)."""

    def __init__(self, backbone, device):
        import torch
        from torch import nn
        import open_clip
        clip = open_clip.create_model({"vit-b-16": "ViT-B-16-quickgelu", "rn50": "RN50-quickgelu"}[backbone],
                                      pretrained=None)
        if backbone == "rn50":
            make_resnet_reid(clip)
        self.backbone = backbone
        self.clip = clip.to(device).train()
        for p in self.text_params():
            p.requires_grad_(False)
        embed = clip.text_projection.shape[1]
        feature = 768 if backbone == "vit-b-16" else 2048
        token = clip.token_embedding.weight.shape[1]
        h = 4 * embed
        self.inversion = nn.Sequential(
            nn.Linear(embed, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(0.5),
            nn.Linear(h, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(0.5),
            nn.Linear(h, token), nn.LayerNorm(token)).to(device)
        self.neck_f = nn.BatchNorm1d(feature).to(device)
        self.neck_p = nn.BatchNorm1d(embed).to(device)
        for neck in (self.neck_f, self.neck_p):
            neck.bias.requires_grad_(False)
        self.cls_f = nn.Linear(feature, CLASSES, bias=False).to(device)
        self.cls_p = nn.Linear(embed, CLASSES, bias=False).to(device)
        for c in (self.cls_f, self.cls_p):
            nn.init.normal_(c.weight, std=0.001)
        # "A photo of a sks hand": placeholder at position 5 (after <start>, a, photo, of, a).
        tok = open_clip.get_tokenizer("ViT-B-16")
        self.ids = tok(["A photo of a sks hand"]).to(device)
        self.placeholder = 5
        self.end = int(self.ids.argmax(-1))
        new = [p for m in (self.inversion, self.neck_f, self.neck_p, self.cls_f, self.cls_p)
               for p in m.parameters() if p.requires_grad]
        self.optim = torch.optim.Adam([
            {"params": [p for p in self.clip.visual.parameters()], "lr": 5e-6},
            {"params": new, "lr": 5e-5},
        ], weight_decay=5e-4)

    def text_params(self):
        c = self.clip
        return ([c.token_embedding.weight, c.positional_embedding, c.text_projection]
                + list(c.transformer.parameters()) + list(c.ln_final.parameters()))

    def image(self, pixels):
        vis = self.clip.visual
        if self.backbone == "vit-b-16":
            proj = vis.proj
            vis.proj = None
            feature = vis(pixels)  # CLS after ln_post
            vis.proj = proj
            return feature, feature @ proj
        x = vis.stem(pixels)
        x = vis.layer4(vis.layer3(vis.layer2(vis.layer1(x))))
        return x.mean(dim=(2, 3)), vis.attnpool(x)

    def text(self, tokens):
        import torch
        c = self.clip
        n = tokens.shape[0]
        emb = c.token_embedding(self.ids).expand(n, -1, -1)
        x = torch.cat([emb[:, :self.placeholder], tokens[:, None], emb[:, self.placeholder + 1:]], dim=1)
        x = x + c.positional_embedding
        x = c.transformer(x, attn_mask=c.attn_mask)
        x = c.ln_final(x)
        return x[:, self.end] @ c.text_projection

    def step(self, pixels, labels):
        import torch
        import torch.nn.functional as F
        feature, projected = self.image(pixels)
        logits_f = self.cls_f(self.neck_f(feature))
        logits_p = self.cls_p(self.neck_p(projected))
        text = self.text(self.inversion(projected))
        id_loss = F.cross_entropy(logits_f, labels, label_smoothing=0.1) \
            + F.cross_entropy(logits_p, labels, label_smoothing=0.1)
        pos = (labels[:, None] == labels[None, :]).float()

        def supcon(a, b):
            logits = a @ b.T
            logits = logits - logits.max(dim=1, keepdim=True).values.detach()
            log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            return -((pos * log_prob).sum(1) / pos.sum(1)).mean()

        loss = id_loss + supcon(projected, text) + supcon(text, projected)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return loss


class PyTorchRunner:
    """Times one workload at a time, keeping built models for the bf16 variant."""

    def __init__(self, args):
        import torch
        torch.manual_seed(0)
        torch.set_num_threads(args.threads)
        self.args = args
        self.device = torch.device(args.device)
        cuda = self.device.type == "cuda"
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def run(self, key, dtype_tag="fp32"):
        """Elements per second of workload `key` (a criterion id), plus extra figures."""
        import torch
        args, device = self.args, self.device
        group, rest = key.split("/", 1)
        extra = {}
        if group == "image_encoder":
            backbone, batch = rest.split("/")
            batch = int(batch[1:])
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_tag]
            model = open_clip_model(backbone).to(device).to(dtype)
            x = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
            with torch.inference_mode():
                t = timed(lambda: model.encode_image(x), self.sync, args.seconds, 5, 2)
            elements = batch
        elif group == "text_encoder":
            model = open_clip_model("vit-b-16").to(device)
            ids = torch.randint(1, 49407, (8, 77), device=device)
            for r in range(8):
                ids[r, 10 + r] = 49407
            with torch.inference_mode():
                t = timed(lambda: model.encode_text(ids), self.sync, args.seconds, 5, 2)
                # The same work as ours: clip-handid leaves out the padding after the batch's last
                # end-of-text token, which under the causal mask changes no output. PyTorch given
                # the same shortcut (checked to give encode_text's values), so that the ratio
                # against it compares the kernels rather than the amount of work.
                torch.testing.assert_close(encode_text_used_tokens(model, ids), model.encode_text(ids),
                                           rtol=1e-4, atol=1e-4)
                t_used = timed(lambda: encode_text_used_tokens(model, ids), self.sync, args.seconds, 5, 2)
            extra["pytorch_used_tokens_per_s"] = 8 / t_used
            elements = 8
        elif group == "train_step":
            backbone, batch = rest.split("/")
            batch = int(batch[1:])
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            model = HandIdTorch(backbone, device)
            x = torch.randn(batch, 3, 224, 224, device=device)
            labels = (torch.arange(batch, device=device) // 2) % CLASSES
            t = timed(lambda: model.step(x, labels), self.sync, args.seconds * 2, 5, 2)
            if device.type == "cuda":
                extra["peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
            elements = batch
        elif group == "pipeline":
            return pipeline_pytorch(args, rest.endswith("1-thread")), extra
        elif group == "metrics":
            return metrics_numpy(args), extra
        else:
            raise ValueError(key)
        return elements / t, extra


def encode_text_used_tokens(model, ids):
    """open_clip's `encode_text` on the tokens up to the batch's last end-of-text token (the
    largest id of each row): under the causal mask the ones after it change no output."""
    import torch
    n = int(ids.argmax(dim=1).max()) + 1
    x = model.token_embedding(ids[:, :n]) + model.positional_embedding[:n]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    return x[torch.arange(x.shape[0]), ids.argmax(dim=1)] @ model.text_projection


# Query and gallery sizes of the protocol (benches/evaluation.rs): four 11k subsets against the
# 290-image combined gallery, HD's 1992 queries against 251 + 1342 distractor images.
PROTOCOL_SIZES = [(971, 290, 71), (988, 290, 73), (917, 290, 71), (948, 290, 75), (1992, 1593, 251)]
RUNS = 10


def eval_func(distmat, q_pids, g_pids):
    """The reference code's numpy evaluation (TransReID / CLIP-ReID `eval_func`): CMC and AP
    per query from the full sorted gallery."""
    import numpy as np
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    cmc_all, aps = [], []
    for q in range(distmat.shape[0]):
        orig = matches[q]
        cmc = orig.cumsum()
        cmc[cmc > 1] = 1
        cmc_all.append(cmc[:50])
        hits = orig.cumsum() / np.arange(1, len(orig) + 1) * orig
        aps.append(hits.sum() / orig.sum())
    return np.asarray(cmc_all).mean(0), float(np.mean(aps))


def metrics_numpy(args):
    """Runs per second of the 5 datasets x 10 runs evaluation from precomputed similarities."""
    import numpy as np
    rng = np.random.default_rng(12345)
    cases = []
    for queries, gallery, ids in PROTOCOL_SIZES:
        for _ in range(RUNS):
            q = rng.integers(0, ids, queries)
            g = np.concatenate([np.arange(ids), rng.integers(ids, ids + gallery, gallery - ids)])
            sim = rng.uniform(-1, 1, (queries, gallery)) + 0.8 * (q[:, None] == g[None, :])
            cases.append((-sim, q, g))
    t = timed(lambda: [eval_func(d, q, g) for d, q, g in cases], lambda: None, args.seconds, 5, 1)
    return len(cases) / t


def pipeline_images(directory, n=16):
    """The same kind of 1600 x 1200 JPEGs as benches/pipeline.rs, written with PIL."""
    import numpy as np
    from PIL import Image
    paths = []
    y, x = np.mgrid[0:1200, 0:1600].astype(np.uint32)
    for k in range(n):
        noise = ((x * 7919) ^ (y * 104729) ^ (k * 31)) % 23
        img = np.stack([((x // 8) ^ noise) % 256, (y // 6) % 256, ((x + y) // 12 + k * 9) % 256], -1)
        p = Path(directory) / f"hand_{k:02}.jpg"
        Image.fromarray(img.astype(np.uint8)).save(p, quality=90)
        paths.append(str(p))
    return paths


def load_reid(path):
    """torchvision's re-ID eval transform: PIL decode, bicubic resize to 224 x 224, normalise."""
    import numpy as np
    from PIL import Image
    img = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    a = np.asarray(img, dtype=np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    return ((a - mean) / std).transpose(2, 0, 1)


def pipeline_pytorch(args, single):
    """Images per second of PIL decode + resize, in this process or a pool of `threads` workers."""
    from multiprocessing import Pool
    with tempfile.TemporaryDirectory() as d:
        paths = pipeline_images(d)
        if single:
            t = timed(lambda: [load_reid(p) for p in paths], lambda: None, args.seconds, 5, 1)
        else:
            with Pool(args.threads) as pool:
                t = timed(lambda: pool.map(load_reid, paths), lambda: None, args.seconds, 5, 1)
    return len(paths) / t


# ------------------------------------------------------------------------------------------
# Our side: cargo bench and criterion's estimates
# ------------------------------------------------------------------------------------------

BENCH_TARGETS = {"image_encoder": "encoders", "text_encoder": "encoders", "train_step": "train_step",
                 "pipeline": "pipeline", "metrics": "evaluation"}


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def rust_env(args):
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    if args.batch_train != 4:
        env["CLIP_HANDID_BENCH_BATCH"] = str(args.batch_train)
    return env


def bench_executables(args):
    """Builds the bench targets and returns {target: executable}."""
    targets = sorted({BENCH_TARGETS[g] for g in args.groups})
    cmd = ["cargo", "bench", "--no-run", "--message-format=json"] + [a for t in targets for a in ("--bench", t)]
    if args.rust_features:
        cmd += ["--features", args.rust_features]
    out = subprocess.run(cmd, cwd=ROOT, env=rust_env(args), check=True, stdout=subprocess.PIPE, text=True).stdout
    exes = {}
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and \
                msg["target"]["name"] in targets and "bench" in msg["target"]["kind"]:
            exes[msg["target"]["name"]] = msg["executable"]
    return exes


def criterion_estimate(group, bench_id):
    """Median time per iteration in seconds from criterion's estimates of the last run."""
    path = target_dir() / "criterion" / group / bench_id / "new" / "estimates.json"
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] * 1e-9


def rust_workload(args, exes, key, elements):
    """Runs our criterion bench `key` alone and returns elements per second."""
    group, bench_id = key.split("/", 1)
    exe = exes[BENCH_TARGETS[group]]
    subprocess.run([exe, "--bench", f"^{key}$"], cwd=ROOT, env=rust_env(args), check=True,
                   stdout=subprocess.DEVNULL)
    return elements / criterion_estimate(group, bench_id)


def workload_keys(args):
    keys = []
    if "image_encoder" in args.groups:
        workloads = IMAGE_WORKLOADS if args.batch_infer is None else [("vit-b-16", args.batch_infer)]
        keys += [(f"image_encoder/{b}/b{n}", n) for b, n in workloads]
    if "text_encoder" in args.groups:
        keys.append(("text_encoder/b8", 8))
    if "train_step" in args.groups:
        keys += [(f"train_step/{b}/b{args.batch_train}", args.batch_train) for b in TRAIN_BACKBONES]
    if "pipeline" in args.groups:
        keys += [("pipeline/reid-224/1-thread", 16), ("pipeline/reid-224/all-threads", 16)]
    if "metrics" in args.groups:
        keys.append(("metrics/5x10 from similarities", len(PROTOCOL_SIZES) * RUNS))
    return keys


# ------------------------------------------------------------------------------------------
# Peak resident memory, each workload in its own process
# ------------------------------------------------------------------------------------------

def peak_rss_mib(cmd, env=None):
    """Peak resident memory of a command, from its VmHWM polled in /proc. (The rusage of a
    child is no good here: Linux carries the forking parent's high-water mark into the child's
    `ru_maxrss` across fork and exec, and this parent holds PyTorch models.)"""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_kib = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        # The last reading, not the maximum: a child may reset its mark.
                        peak_kib = int(line.split()[1])
        except OSError:
            pass
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited with status {proc.returncode}")
    return peak_kib / 1024.0


def memory_results(args, exes):
    """Peak RSS of ViT-B/16 inference at batch 8 and of a training step, ours and PyTorch's,
    with PyTorch's resident size right after `import torch, open_clip` for reference."""
    rows = []
    libraries = peak_rss_mib([sys.executable, __file__, "--child", "imports", "--threads", str(args.threads)])
    print(f"PyTorch + open_clip after import: {libraries:.0f} MiB", flush=True)
    cases = [("image_encoder/vit-b-16/b8", "encoders"), (f"train_step/vit-b-16/b{args.batch_train}", "train_step")]
    # Only the workloads of the groups asked for (their bench executables are the ones built).
    cases = [(key, target) for key, target in cases if target in exes]
    for key, target in cases:
        ours = peak_rss_mib([exes[target], "--bench", "--profile-time", "5", f"^{key}$"], rust_env(args))
        theirs = peak_rss_mib([sys.executable, __file__, "--child", key, "--threads", str(args.threads)])
        rows.append((key, ours, theirs, libraries))
        print(f"peak RSS {key:<32} ours {ours:8.0f} MiB   PyTorch {theirs:8.0f} MiB", flush=True)
    return rows


def child(key, threads):
    """One workload for a few seconds, for peak-memory measurement."""
    import torch
    import open_clip  # noqa: F401 (part of the baseline)
    if key == "imports":
        return
    torch.set_num_threads(threads)
    group, backbone, batch = key.split("/")
    batch = int(batch[1:])
    x = torch.randn(batch, 3, 224, 224)
    if group == "image_encoder":
        # Our benchmark builds the image tower alone: drop the text tower and measure from here.
        model = open_clip_model(backbone).visual
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
        with torch.inference_mode():
            for _ in range(3):
                model(x)
    else:
        model = HandIdTorch(backbone, torch.device("cpu"))
        labels = (torch.arange(batch) // 2) % CLASSES
        for _ in range(3):
            model.step(x, labels)


# ------------------------------------------------------------------------------------------

def versions():
    import torch
    import open_clip
    rustc = subprocess.run(["rustc", "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"date": time.strftime("%Y-%m-%d"), "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "open_clip": open_clip.__version__, "rustc": rustc,
            "torch_mkldnn": torch.backends.mkldnn.is_available()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--groups", default="image_encoder,text_encoder,train_step,pipeline,metrics")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rust-features", default="", help="cargo features of our benches (cuda, wgpu)")
    p.add_argument("--batch-train", type=int, default=4)
    p.add_argument("--batch-infer", type=int, default=None, help="GPU: ViT-B/16 inference at this batch only")
    p.add_argument("--bf16", action="store_true", help="also time PyTorch inference in bf16")
    p.add_argument("--seconds", type=float, default=10.0, help="minimum timing per PyTorch workload")
    p.add_argument("--memory", action="store_true", help="also measure peak RSS (CPU)")
    p.add_argument("--memory-only", action="store_true", help="only measure peak RSS")
    p.add_argument("--repeat", type=int, default=1,
                   help="time every workload this many times, ours and PyTorch's back to back each time; "
                        "the ratio printed is the median of the per-pair ratios")
    p.add_argument("--skip-rust", action="store_true")
    p.add_argument("--json", type=Path, help="write all figures here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    args.groups = [g for g in args.groups.split(",") if g]
    unknown = [g for g in args.groups if g not in BENCH_TARGETS]
    if unknown:
        p.error(f"unknown groups {unknown}; expected {sorted(BENCH_TARGETS)}")
    info = versions()
    print(json.dumps(info), flush=True)
    exes = {} if args.skip_rust else bench_executables(args)
    runner = PyTorchRunner(args)
    ours, theirs, extras, runs = {}, {}, {}, {}
    # Ours then PyTorch's, workload by workload (and `--repeat` times each), so that both see the
    # same machine load.
    for key, elements in [] if args.memory_only else workload_keys(args):
        pairs = []
        for _ in range(max(1, args.repeat)):
            o = None if args.skip_rust else rust_workload(args, exes, key, elements)
            t, extras[key] = runner.run(key)
            pairs.append((o, t, extras[key].get("pytorch_used_tokens_per_s")))
            ratio = f"{o / t:7.2f}" if o else "      -"
            print(f"{key:<36} ours {o or float('nan'):9.2f}/s  PyTorch {t:9.2f}/s  ratio {ratio}", flush=True)
            if o and pairs[-1][2]:
                print(f"{key + ' (used tokens)':<36} ours {o:9.2f}/s  PyTorch {pairs[-1][2]:9.2f}/s  ratio "
                      f"{o / pairs[-1][2]:7.2f}", flush=True)
        if args.bf16 and key.startswith("image_encoder/"):
            theirs[key + "@bf16"], _ = runner.run(key, "bf16")
        theirs[key] = statistics.median(t for _, t, _ in pairs)
        if not args.skip_rust:
            ours[key] = statistics.median(o for o, _, _ in pairs)
        runs[key] = [{"ours": o, "pytorch": t} for o, t, _ in pairs]
        if all(u for _, _, u in pairs):
            used = key + " (used tokens)"
            theirs[used] = statistics.median(u for _, _, u in pairs)
            if not args.skip_rust:
                ours[used] = ours[key]
            runs[used] = [{"ours": o, "pytorch": u} for o, _, u in pairs]
    def ratio_of(key):
        """The median of the per-pair ratios (one run each of ours and PyTorch's, back to back)."""
        pairs = runs.get(key, [])
        if not pairs or pairs[0]["ours"] is None:
            return None
        return statistics.median(r["ours"] / r["pytorch"] for r in pairs)
    print(f"\n{'workload':<36} {'ours /s':>10} {'PyTorch /s':>11} {'ratio':>7}"
          + ("   (medians of the runs; ratio: median of the per-pair ratios)" if args.repeat > 1 else ""))
    for key in theirs:
        o, t, r = ours.get(key), theirs[key], ratio_of(key)
        ratio = f"{r:7.2f}" if r else (f"{o / t:7.2f}" if o else "      -")
        print(f"{key:<36} {o or float('nan'):10.2f} {t:11.2f} {ratio}")
    for key, extra in extras.items():
        for name, value in extra.items():
            print(f"PyTorch {key} {name}: {value:.2f}")
    memory = memory_results(args, exes) if (args.memory or args.memory_only) and not args.skip_rust else []
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "threads": args.threads, "ours": ours, "pytorch": theirs,
                                         "ratio": {k: ratio_of(k) for k in runs}, "runs": runs,
                                         "pytorch_extra": extras,
                                         "peak_rss_mib": [{"workload": k, "ours": o, "pytorch": t, "pytorch_after_import": i}
                                                          for k, o, t, i in memory]}, indent=2))


if __name__ == "__main__":
    main()
