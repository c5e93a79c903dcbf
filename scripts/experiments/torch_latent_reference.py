#!/usr/bin/env python3
"""PyTorch counterpart of medsynth's five latent/VAE bench workloads
(Sources/Generators/LatentBenchmarks.swift), built layer for layer like medsynth's networks:

  vae64_train_step_b32       VAE (64 px, 1 ch, base 32, multipliers 1,2,4 = factor 4, 4 latent channels)
                             training step: encode, reparameterised sample, decode, L1 + 1e-6·KL/(C·H·W),
                             backward, Adam(5e-4, no weight decay), EMA(0.999 with warm-up)
  latent16x4_train_step_b32  UNet-S layout on 4×16×16 latents (attention at 8 px), AdamW(2e-4), ε-MSE
  latent8x8_train_step_b32   UNet-S layout on 16×8×8 latents (attention at 4 px; the shipped model's)
  latent16x4_forward_b16     one U-Net forward, batch 16, no gradients, no labels
  latent_dpm20_sample_b16    16 latents, DPM-Solver++(2M) 20 steps (log-SNR grid), ε-prediction,
                             guidance 1, then the VAE decode

Usage (from the repository root):
  python3 scripts/experiments/torch_latent_reference.py bench    # one JSON line per workload
      # REPS=n: timed repetitions (default 5); THREADS=n: torch.set_num_threads(n) (default: torch's, all cores)
  python3 scripts/experiments/torch_latent_reference.py params   # parameter counts
  python3 scripts/experiments/torch_latent_reference.py check [PATH/TO/medsynth]
      # architecture check against the shipped checkpoints in models/: every tensor mapped onto a
      # torch parameter with the same shape, none left over, then numerics against medsynth itself
      # (binary: the argument, else $MEDSYNTH, else .build/release/medsynth; without one only the
      # shape/count checks run).
The U-Net is the class of ../shared/reference/torch_reference.py (override the folder with
REFERENCE_DIR). Needs torch; `check` also needs numpy and pillow.
"""
import importlib.util, json, math, os, shutil, struct, subprocess, sys, tempfile, time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REFERENCE_DIR = os.environ.get("REFERENCE_DIR", os.path.join(REPO, "..", "shared", "reference"))


def _load_reference():
    path = os.path.join(REFERENCE_DIR, "torch_reference.py")
    if not os.path.isfile(path):
        sys.exit(f"torch_latent_reference: {path} not found; set REFERENCE_DIR to the folder of torch_reference.py")
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()


# ---------------- the latent U-Net: the reference UNet-S class -----------------------------------
class LatentUNet(ref.UNet):
    """medsynth's UNet (Sources/Generators/UNet.swift) is layer for layer the reference class, state_dict
    names included (temb.0, label, inp, down.<i>.res.c1, mida.qkv, up.<i>.res.<j>.skip, out.2, ...):
    channel multipliers, one ResBlock per level down and two up, attention at `attentionResolutions`
    and in the middle, class embedding of numClasses + 1 rows added to the time embedding. The one
    knob the reference lacks is medsynth's `timeFeatures` (width of the sinusoidal features, default
    max(32, base)); it equals the base width for every model here (base 32), and is honoured otherwise."""

    def __init__(self, cin, res, attn_res, num_classes=2, base=32, mults=(1, 2, 4, 4), groups=8, time_features=None):
        if groups != 8:
            raise ValueError("the reference UNet hard-codes GroupNorm(8); medsynth config has groups = %d" % groups)
        super().__init__(cin=cin, base=base, mults=tuple(mults), attn_res=tuple(attn_res), res=res, num_classes=num_classes)
        tf = base if time_features is None else time_features
        if tf != base:
            self.temb[0] = nn.Linear(tf, 4 * base)
        self.base = tf  # the reference's forward sizes the sinusoidal features by self.base

    @classmethod
    def from_config(cls, c):
        """From medsynth's UNetConfig JSON."""
        return cls(cin=c["channels"], res=c["imageSize"], attn_res=c.get("attentionResolutions", [8]),
                   num_classes=c.get("numClasses", 0), base=c.get("baseWidth", 32), mults=c.get("channelMultipliers", [1, 2, 4, 4]),
                   groups=c.get("groups", 8), time_features=c.get("timeFeatures", c.get("baseWidth", 32)))


def bench_unet_config(latent_channels, latent_size):
    """LatentBenchmarks.swift: UNetConfig(imageSize: latentSize, channels: latentChannels, numClasses: 2),
    attentionResolutions = [latentSize / 2]; other fields default (base 32, multipliers 1,2,4,4, groups 8,
    timeFeatures max(32, base) = 32)."""
    return {"imageSize": latent_size, "channels": latent_channels, "baseWidth": 32, "channelMultipliers": [1, 2, 4, 4],
            "attentionResolutions": [latent_size // 2], "groups": 8, "numClasses": 2, "timeFeatures": 32}


# ---------------- the VAE (Sources/Generators/VAE.swift) -----------------------------------------
class VAEResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x)))))), 1×1 skip when the widths differ (no time embedding)."""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.n1 = nn.GroupNorm(groups, cin); self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.n2 = nn.GroupNorm(groups, cout); self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.c2(F.silu(self.n2(self.c1(F.silu(self.n1(x))))))
        return (self.skip(x) if self.skip is not None else x) + h


class VAEEncoder(nn.Module):
    """conv → per level a ResBlock, then a stride-2 conv (all but the last) → middle ResBlock →
    GroupNorm, SiLU, conv to 2·L channels (means, then log-variances)."""

    def __init__(self, channels, base, mults, latent, groups):
        super().__init__()
        widths = [base * m for m in mults]
        self.inp = nn.Conv2d(channels, widths[0], 3, 1, 1)
        self.down = nn.ModuleList(); c = widths[0]
        for i, w in enumerate(widths):
            blk = nn.ModuleDict({"res": VAEResBlock(c, w, groups)}); c = w
            if i < len(widths) - 1:
                blk["down"] = nn.Conv2d(c, c, 3, 2, 1)
            self.down.append(blk)
        self.mid = VAEResBlock(c, c, groups)
        self.out = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, 2 * latent, 3, 1, 1))

    def forward(self, x):
        h = self.inp(x)
        for blk in self.down:
            h = blk["res"](h)
            if "down" in blk: h = blk["down"](h)
        return self.out(self.mid(h))


class VAEDecoder(nn.Module):
    """conv → middle ResBlock → per level (coarsest first) a ResBlock, then nearest ×2 + a conv that
    already narrows to the next level's width → GroupNorm, SiLU, conv to the image channels."""

    def __init__(self, channels, base, mults, latent, groups):
        super().__init__()
        widths = [base * m for m in mults]
        c = widths[-1]
        self.inp = nn.Conv2d(latent, c, 3, 1, 1)
        self.mid = VAEResBlock(c, c, groups)
        self.up = nn.ModuleList()
        for i in reversed(range(len(widths))):
            blk = nn.ModuleDict({"res": VAEResBlock(c, widths[i], groups)}); c = widths[i]
            if i > 0:
                blk["up"] = nn.Conv2d(c, widths[i - 1], 3, 1, 1); c = widths[i - 1]
            self.up.append(blk)
        self.out = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, channels, 3, 1, 1))

    def forward(self, z):
        h = self.mid(self.inp(z))
        for blk in self.up:
            h = blk["res"](h)
            if "up" in blk: h = blk["up"](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(h)


class VAE(nn.Module):
    """state_dict names = medsynth's (enc.down.<i>.res.c1, dec.up.<i>.up, enc.out.2, ...)."""

    def __init__(self, image_size=64, channels=1, base=32, mults=(1, 2, 4), latent=4, groups=8):
        super().__init__()
        self.image_size, self.channels, self.latent = image_size, channels, latent
        self.latent_size = image_size // (1 << (len(mults) - 1))
        self.enc = VAEEncoder(channels, base, mults, latent, groups)
        self.dec = VAEDecoder(channels, base, mults, latent, groups)

    @classmethod
    def from_config(cls, c):
        """From medsynth's VAEConfig JSON (defaults = VAEConfig())."""
        return cls(image_size=c.get("imageSize", 64), channels=c.get("channels", 1), base=c.get("baseWidth", 32),
                   mults=c.get("channelMultipliers", [1, 2, 4]), latent=c.get("latentChannels", 4), groups=c.get("groups", 8))


LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0   # posteriorLogVarianceRange (diffusers' DiagonalGaussianDistribution)


def vae_losses(vae, x, kl_weight=1e-6):
    """VAETrainer.losses with the default options (L1, no scale-equivariance, no decoder noise):
    total = mean|x̂ − x| + klWeight / (C·H·W) · KL, KL = ½Σ(μ² + σ² − 1 − log σ²) per image, batch mean
    (i.e. the per-image-sum convention Σ|x − x̂| + 1e-6·KL, divided by C·H·W)."""
    moments = vae.enc(x)
    mean, logvar = moments.chunk(2, dim=1)
    logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)        # reparameterisation
    rec = vae.dec(z)
    recon = F.l1_loss(rec, x)
    kl = 0.5 * (mean * mean + logvar.exp() - 1 - logvar).sum() / x.shape[0]
    total = recon + kl * (kl_weight / x[0].numel())
    with torch.no_grad():
        mse = F.mse_loss(rec, x)   # medsynth computes it for the PSNR it reports
    return total, recon, kl, mse


# ---------------- noise schedule and DPM-Solver++(2M) (DiffusionSchedule/DiffusionSampler.swift) --
def cosine_alpha_bars(T=1000, snr_shift=1.0):
    """ᾱ[t], t = 0..T−1, in double precision as NoiseSchedule(kind: .cosine)."""
    s = 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    bars = [max(f(t) / f(0), 1e-5) for t in range(1, T + 1)]
    if snr_shift != 1:
        bars = [snr_shift * a / (1 + (snr_shift - 1) * a) for a in bars]
    return bars


def log_snr_timesteps(bars, count):
    """DiffusionSampler.logSNRTimesteps: uniform in λ = ½log(ᾱ/(1−ᾱ)) from the noisiest to the cleanest
    step, nearest timestep by binary search, repeats removed (DPM-Solver's default grid in medsynth)."""
    T = len(bars)
    lambdas = [0.5 * math.log(a / (1 - a)) for a in bars]
    hi, lo = lambdas[T - 1], lambdas[0]
    out = []
    for k in range(max(count, 2)):
        target = hi + (lo - hi) * k / max(count - 1, 1)
        best, best_d, left, right = 0, float("inf"), 0, T - 1
        while left <= right:
            mid = (left + right) // 2
            d = abs(lambdas[mid] - target)
            if d < best_d: best_d, best = d, mid
            if lambdas[mid] > target: left = mid + 1
            else: right = mid - 1
        if not out or (out[-1] != best and best not in out):
            out.append(best)
    return out


def model_x0(unet, x, t, labels, bars, target):
    """x₀ estimate at timestep t (guidance 1: one conditional U-Net call; no x₀ clipping for latents)."""
    a, s = math.sqrt(bars[t]), math.sqrt(1 - bars[t])
    out = unet(x, torch.full((x.shape[0],), t, dtype=torch.long), labels)
    return (x - s * out) / a if target == "epsilon" else a * x - s * out


def dpm_solver_2m(unet, x, labels, bars, steps=20, target="epsilon"):
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in data prediction on medsynth's log-SNR grid; the last
    step (to ᾱ = 1) returns the x₀ estimate. Same update as DiffusionSampler.denoise(.dpm)."""
    ts = log_snr_timesteps(bars, steps)
    lam = lambda t: 0.5 * math.log(bars[t] / (1 - bars[t]))
    prev_x0, prev_h = None, None
    for k, t in enumerate(ts):
        t_prev = ts[k + 1] if k + 1 < len(ts) else -1
        x0 = model_x0(unet, x, t, labels, bars, target)
        if t_prev < 0:
            x = x0
        else:
            a_t, a_prev = bars[t], bars[t_prev]
            h = lam(t_prev) - lam(t)
            ratio = math.sqrt((1 - a_prev) / (1 - a_t))
            factor = math.sqrt(a_prev) * (math.exp(-h) - 1)
            d = x0
            if prev_x0 is not None:
                r = prev_h / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
            x = ratio * x - factor * d
            prev_h = h
        prev_x0 = x0
    return x


# ---------------- bench -------------------------------------------------------------------------
def timed(fn, warmup, reps):
    for _ in range(warmup): fn()
    t0 = time.perf_counter()
    for _ in range(reps): fn()
    return (time.perf_counter() - t0) / reps


def unet_train_step_seconds(unet, latent_shape, reps):
    """LatentBenchmarks.trainStepSeconds: batch 32, AdamW(2e-4, weight decay 0.01), cosine ᾱ (T = 1000),
    x_t = √ᾱ·x₀ + √(1−ᾱ)·ε, labels in 0..<3 (2 = the null class), MSE to ε."""
    opt = torch.optim.AdamW(unet.parameters(), 2e-4)
    ab = torch.tensor(cosine_alpha_bars(1000), dtype=torch.float32)
    x0 = torch.randn(32, *latent_shape)

    def step():
        t = torch.randint(0, 1000, (32,)); n = torch.randn_like(x0)
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * n
        y = torch.randint(0, 3, (32,))
        opt.zero_grad()
        loss = F.mse_loss(unet(xt, t, y), n)
        loss.backward(); opt.step()
    return timed(step, 2, reps)


def bench():
    torch.manual_seed(0)
    if os.environ.get("THREADS"):
        torch.set_num_threads(int(os.environ["THREADS"]))
    reps = int(os.environ.get("REPS", "5"))
    out = []
    vae_config = {}                                                        # VAEConfig(): factor 4, 4×16×16 latents
    lc, ls = 4, 16
    unet = LatentUNet.from_config(bench_unet_config(lc, ls))
    s = unet_train_step_seconds(unet, (lc, ls, ls), reps)
    out.append({"workload": "latent16x4_train_step_b32", "seconds": s, "images_per_s": 32 / s})

    u8 = LatentUNet.from_config(bench_unet_config(16, 8))                  # the factor-8 VAE's 16×8×8 latents
    s = unet_train_step_seconds(u8, (16, 8, 8), reps)
    out.append({"workload": "latent8x8_train_step_b32", "seconds": s, "images_per_s": 32 / s})
    del u8

    unet.eval()
    with torch.no_grad():
        x = torch.randn(16, lc, ls, ls); t = torch.full((16,), 500)
        s = timed(lambda: unet(x, t), 1, reps)
    out.append({"workload": "latent16x4_forward_b16", "seconds": s, "images_per_s": 16 / s,
                "ddim50_images_per_s": 16 / (50 * s)})

    # 16 latents, DPM-Solver++(2M) 20 steps, ε-prediction, guidance 1 (one U-Net call per step, labels 0),
    # latent scale 1, then decode and clamp. The batch is decoded in one call (what a PyTorch user
    # would do); medsynth's VAE.decodeImages decodes one latent per forward pass.
    vae = VAE.from_config(vae_config).eval()
    bars = cosine_alpha_bars(1000)
    labels = torch.zeros(16, dtype=torch.long)

    def sample():
        with torch.no_grad():
            z = dpm_solver_2m(unet, torch.randn(16, lc, ls, ls), labels, bars, steps=20, target="epsilon")
            return vae.dec(z / 1.0).clamp(-1, 1)
    s = timed(sample, 0, max(1, reps // 2))
    out.append({"workload": "latent_dpm20_sample_b16", "seconds": s, "images_per_s": 16 / s})
    del unet

    # VAETrainer.step with VAETrainingOptions(): Adam.adamW(lr 5e-4, weight decay 0) = Adam, L1 + KL,
    # then the EMA (decay 0.999, warm-up min(decay, (1 + step)/(10 + step))) over all parameters.
    vae = VAE.from_config(vae_config).train()
    ema = VAE.from_config(vae_config); ema.load_state_dict(vae.state_dict())
    opt = torch.optim.AdamW(vae.parameters(), 5e-4, weight_decay=0.0)
    params, shadow = list(vae.parameters()), list(ema.parameters())
    x = torch.rand(32, 1, 64, 64) * 2 - 1
    step_count = [0]

    def vae_step():
        opt.zero_grad()
        total, recon, kl, mse = vae_losses(vae, x)
        total.backward(); opt.step()
        step_count[0] += 1
        d = min(0.999, (1 + step_count[0]) / (10 + step_count[0]))
        with torch.no_grad():
            torch._foreach_lerp_(shadow, params, 1 - d)                  # θ_ema ← d·θ_ema + (1 − d)·θ
        return [total.item(), recon.item(), kl.item(), 10 * math.log10(4 / max(mse.item(), 1e-12))]
    # Two warm-up steps as the reference's training steps (medsynth's bench uses one): PyTorch's second
    # VAE step is still slow (oneDNN primitive and allocator warm-up), which one warm-up step would time.
    s = timed(vae_step, 2, reps)
    out.append({"workload": "vae64_train_step_b32", "seconds": s, "images_per_s": 32 / s})

    for o in out:
        o["threads"] = torch.get_num_threads(); o["torch"] = torch.__version__
        print(json.dumps(o), flush=True)


def count(m):
    return sum(p.numel() for p in m.parameters())


def params():
    for name, m in [("vae64 (factor 4, 4 latent ch, base 32)", VAE()),
                    ("vae64.enc", VAE().enc), ("vae64.dec", VAE().dec),
                    ("latent16x4 UNet (cond 2 classes)", LatentUNet.from_config(bench_unet_config(4, 16))),
                    ("latent8x8 UNet (16 ch, cond 2 classes)", LatentUNet.from_config(bench_unet_config(16, 8))),
                    ("vae-mni64 (factor 8, 16 latent ch, base 16)",
                     VAE.from_config({"baseWidth": 16, "channelMultipliers": [1, 2, 4, 4], "latentChannels": 16}))]:
        print(name, count(m))


# ---------------- check --------------------------------------------------------------------------
def read_safetensors(path):
    """(tensors name → {dtype, shape, data_offsets}, metadata, loader(name) → torch tensor)."""
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n

    def load(name):
        info = header[name]
        assert info["dtype"] == "F32", f"{name}: dtype {info['dtype']}"
        a, b = info["data_offsets"]
        arr = np.fromfile(path, dtype="<f4", count=(b - a) // 4, offset=base + a)
        return torch.from_numpy(arr.reshape(info["shape"]).copy())
    return header, metadata, load


def write_safetensors(path, metadata, tensors):
    """tensors: name → float32 torch tensor; header padded to 8 bytes, as the format allows."""
    import numpy as np
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        b = t.detach().contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b); offset += len(b)
    js = json.dumps(header).encode()
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js))); f.write(js)
        for b in blobs: f.write(b)


def sampling_prefix(header, model_prefix):
    """TrainingRun.samplingPrefix: a training checkpoint keeps the sampling (EMA) weights under "ema."."""
    return "ema" if any(k.startswith("ema.") for k in header) else model_prefix


class Checks:
    def __init__(self):
        self.rows = []

    def add(self, name, ok, detail):
        self.rows.append((name, ok, detail))
        print(f"[{'PASS' if ok is True else ('SKIP' if ok is None else 'FAIL')}] {name}: {detail}", flush=True)


def map_checkpoint(checks, label, header, load, module, prefix):
    """Checkpoint tensor '<prefix>.<name>' → torch state_dict entry '<name>' (the names are medsynth's,
    so the mapping is the prefix alone). Asserts equal shapes and nothing left over, then loads."""
    sd = module.state_dict()
    mine = {k[len(prefix) + 1:]: k for k in header if k.startswith(prefix + ".")}
    missing = sorted(set(sd) - set(mine))          # torch parameters without a checkpoint tensor
    extra = sorted(set(mine) - set(sd))            # checkpoint tensors without a torch parameter
    bad = [(k, header[mine[k]]["shape"], list(sd[k].shape)) for k in sorted(set(sd) & set(mine))
           if list(header[mine[k]]["shape"]) != list(sd[k].shape)]
    ckpt_count = sum(math.prod(header[mine[k]]["shape"]) for k in mine)
    ok = not missing and not extra and not bad and ckpt_count == count(module)
    detail = (f"{len(mine)} tensors '{prefix}.*' ↔ {len(sd)} torch tensors, {ckpt_count:,} vs {count(module):,} parameters"
              + (f"; torch-only {missing[:5]}" if missing else "") + (f"; checkpoint-only {extra[:5]}" if extra else "")
              + (f"; shape mismatches {bad[:5]}" if bad else ""))
    checks.add(f"{label}: shape mapping", ok, detail)
    if ok:
        module.load_state_dict({k: load(mine[k]) for k in sd}, strict=True)
    return ok


# medsynth's RandomStream (Sources/Core/Random.swift): Philox4x32-10 + Box-Muller, to draw the same noise
M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class RandomStream:
    def __init__(self, seed=None, raw_key=None, stream=0):
        self.key = splitmix64(seed) if raw_key is None else raw_key
        self.stream, self.block, self.buf, self.spare = stream, 0, [], None

    def split(self, i):
        return RandomStream(raw_key=splitmix64(self.key ^ splitmix64((self.stream + 0x5851F42D4C957F2D) & M64) ^ splitmix64(i)), stream=i)

    def _refill(self):
        c = [self.block & M32, self.block >> 32, self.stream & M32, self.stream >> 32]
        k0, k1 = self.key & M32, self.key >> 32
        for r in range(10):
            if r > 0:
                k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
            p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
            c = [(p1 >> 32) ^ c[1] ^ k0, p1 & M32, (p0 >> 32) ^ c[3] ^ k1, p0 & M32]
        self.buf = c; self.block += 1

    def u32(self):
        if not self.buf: self._refill()
        return self.buf.pop(0)

    def normal(self):
        import numpy as np
        if self.spare is not None:
            s, self.spare = self.spare, None
            return s
        u1 = (self.u32() + 1.0) * (1.0 / 4294967296.0)
        u2 = self.u32() * (1.0 / 4294967296.0)
        radius, angle = math.sqrt(-2.0 * math.log(u1)), 2.0 * math.pi * u2
        self.spare = float(np.float32(radius * math.sin(angle)))
        return float(np.float32(radius * math.cos(angle)))


def sample_noise(seed, indices, shape):
    """Sample i's N(0, 1) draws from RandomStream(seed).split(i), as generate / DiffusionSampler.drawNoise."""
    per = math.prod(shape)
    rows = []
    for i in indices:
        s = RandomStream(seed).split(i)
        rows.append([s.normal() for _ in range(per)])
    return torch.tensor(rows, dtype=torch.float32).view(len(indices), *shape)


def read_png(path):
    """[−1, 1] values of a gray PNG (8 or 16 bit) and the step of one code in those units."""
    import numpy as np
    from PIL import Image
    img = Image.open(path)
    a = np.asarray(img).astype(np.float64)
    peak = 65535.0 if (img.mode.startswith("I") or a.max() > 255) else 255.0
    return torch.from_numpy(a * (2 / peak) - 1), 2 / peak


def quantise(x, peak):
    """Image(floatCHW:): round((clamp(x) + 1)·peak/2), half away from zero."""
    return torch.floor((x.clamp(-1, 1).double() + 1) * (peak / 2) + 0.5)


def find_medsynth(argv):
    for cand in argv[:1] + [os.environ.get("MEDSYNTH", ""), os.path.join(REPO, ".build", "release", "medsynth")]:
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return os.path.abspath(cand)
    return None


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r.stdout


def compare_generated(checks, label, folder, indices, torch_images, tolerance):
    """torch_images: N×1×H×W floats; folder: medsynth's sample_%06d.png (16-bit)."""
    worst, step = 0.0, None
    for row, i in enumerate(indices):
        ms, step = read_png(os.path.join(folder, "sample_%06d.png" % i))
        worst = max(worst, (torch_images[row, 0].double().clamp(-1, 1) - ms).abs().max().item())
    checks.add(label, worst <= step / 2 + tolerance,
               f"max |torch − medsynth| = {worst:.2e} in [−1, 1] units over {len(indices)} images "
               f"(16-bit PNG: rounding alone ≤ {step / 2:.1e}; tolerance {step / 2 + tolerance:.1e})")
    return worst


def check(argv):
    torch.manual_seed(0)
    checks = Checks()
    models = os.path.join(REPO, "models")
    vae_path = os.path.join(models, "vae-mni64.safetensors")
    ld_path = os.path.join(models, "latent-diffusion-mni64-cond.safetensors")

    # 1. the factor-8 VAE file
    vh, vmeta, vload = read_safetensors(vae_path)
    vconf = json.loads(vmeta["medsynth.config"])
    print(f"vae-mni64: config {vconf}, latent scale {vmeta.get('medsynth.latent_scale')}")
    vae = VAE.from_config(vconf).eval()
    vae_ok = map_checkpoint(checks, "vae-mni64 VAE", vh, vload, vae, sampling_prefix(vh, "vae"))
    leftover = [k for k in vh if not k.startswith(sampling_prefix(vh, "vae") + ".")]
    checks.add("vae-mni64: no other tensors", not leftover, f"{len(leftover)} tensors outside the VAE prefix {leftover[:5]}")

    # 2. the latent diffusion file: U-Net under "U." (or "ema."), embedded VAE under "vae."
    lh, lmeta, lload = read_safetensors(ld_path)
    lconf = json.loads(lmeta["medsynth.config"])
    dopts = json.loads(lmeta.get("medsynth.diffusion", "{}"))
    print(f"latent-diffusion: U-Net {lconf['unet']}, autoencoder {lconf['autoencoder']}, latentScale {lconf['latentScale']}, "
          f"target {dopts.get('target')}, schedule {dopts.get('schedule')} T={dopts.get('timesteps')} snrShift={dopts.get('snrShift', 1)}")
    unet = LatentUNet.from_config(lconf["unet"]).eval()
    uprefix = sampling_prefix(lh, "U")
    unet_ok = map_checkpoint(checks, "latent-diffusion U-Net", lh, lload, unet, uprefix)
    lvae = VAE.from_config(lconf["autoencoder"]).eval()
    lvae_ok = map_checkpoint(checks, "latent-diffusion embedded VAE", lh, lload, lvae, "vae")
    leftover = [k for k in lh if not (k.startswith(uprefix + ".") or k.startswith("vae."))]
    checks.add("latent-diffusion: no other tensors", not leftover, f"{len(leftover)} tensors outside '{uprefix}.' and 'vae.' {leftover[:5]}")

    # 3. the bench's latent8x8 U-Net is the shipped U-Net's configuration: same tensors, same shapes
    bench8 = bench_unet_config(16, 8)
    same = {k: lconf["unet"].get(k) for k in bench8} == bench8
    b8 = LatentUNet.from_config(bench8)
    shapes_equal = {k: list(v.shape) for k, v in b8.state_dict().items()} == {k[len(uprefix) + 1:]: list(v["shape"]) for k, v in lh.items() if k.startswith(uprefix + ".")}
    checks.add("latent8x8_train_step_b32 U-Net = shipped U-Net layout", same and shapes_equal,
               f"config fields equal: {same}; tensor names/shapes equal: {shapes_equal}; {count(b8):,} parameters")
    # The bench's factor-4 VAE and 16×16×4 U-Net have no shipped checkpoint: same classes, other config.
    print(f"(bench models without a checkpoint: vae64 factor 4 {count(VAE()):,} parameters, "
          f"latent16x4 U-Net {count(LatentUNet.from_config(bench_unet_config(4, 16))):,} parameters)")

    # 4. numerics against medsynth
    medsynth = find_medsynth(argv)
    if medsynth is None:
        checks.add("numerics against medsynth", None, "no medsynth binary (pass its path, or set MEDSYNTH); shape/count checks only")
    else:
        print(f"medsynth binary: {medsynth}")
        tmp = tempfile.mkdtemp(prefix="torch_latent_check_")
        try:
            numeric_checks(checks, medsynth, tmp, vae if vae_ok else None, float(vmeta.get("medsynth.latent_scale", 1)),
                           unet if unet_ok else None, lvae if lvae_ok else None, lconf, dopts)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    failed = [r for r in checks.rows if r[1] is False]
    skipped = [r for r in checks.rows if r[1] is None]
    print("\nSUMMARY: %s — %d checks, %d passed, %d failed, %d skipped" %
          ("PASS" if not failed else "FAIL", len(checks.rows), sum(r[1] is True for r in checks.rows), len(failed), len(skipped)))
    for name, ok, _ in checks.rows:
        print(f"  {'PASS' if ok is True else ('SKIP' if ok is None else 'FAIL')}  {name}")
    sys.exit(1 if failed else 0)


def numeric_checks(checks, medsynth, tmp, vae, vae_scale, unet, lvae, lconf, dopts):
    vae_file = os.path.join(REPO, "models", "vae-mni64.safetensors")
    ld_file = os.path.join(REPO, "models", "latent-diffusion-mni64-cond.safetensors")
    quiet = ["--progress", "none"]
    if vae is not None:
        # a) encoder (posterior mean) + decoder: `medsynth reconstruct` on 6 healthy slices, 8-bit output
        src = os.path.join(REPO, "datasets", "mni64", "healthy")
        names = sorted(f for f in os.listdir(src) if f.endswith(".png"))
        names = names[:: max(1, len(names) // 6)][:6]
        indir, outdir = os.path.join(tmp, "in"), os.path.join(tmp, "rec")
        os.makedirs(indir)
        for n in names: shutil.copy(os.path.join(src, n), indir)
        text = run([medsynth, "reconstruct", "--model", vae_file, indir, outdir] + quiet)
        x = torch.stack([read_png(os.path.join(indir, n))[0] for n in names]).float().unsqueeze(1)
        with torch.no_grad():
            mean = vae.enc(x).chunk(2, dim=1)[0]                       # posterior mean
            rec = vae.dec(mean).clamp(-1, 1)
        worst_float, worst_codes = 0.0, 0
        for row, n in enumerate(names):
            ms, step = read_png(os.path.join(outdir, n[:-4] + ".png"))
            worst_float = max(worst_float, (rec[row, 0].double() - ms).abs().max().item())
            worst_codes = max(worst_codes, int((quantise(rec[row, 0], 255) - torch.round((ms + 1) * 127.5)).abs().max().item()))
        checks.add("VAE reconstruct (encoder mean + decoder) vs `medsynth reconstruct`", worst_codes <= 1,
                   f"max |torch − medsynth| = {worst_float:.2e} in [−1, 1] units (8-bit PNG: rounding alone ≤ {1 / 255:.1e}); "
                   f"max difference after torch's own 8-bit rounding: {worst_codes} code(s) over {len(names)} images")
        # the per-channel latent statistics medsynth prints (scaled units, 3 decimals): the encoder alone
        ms_stats = {}
        for line in text.splitlines():
            if line.startswith("latent channel"):
                parts = line.replace(":", "").split()
                ms_stats[int(parts[2])] = (float(parts[4]), float(parts[6]))
        scaled = (mean * vae_scale).double()
        worst = 0.0
        for c, (m, s) in ms_stats.items():
            v = scaled[:, c].flatten()
            worst = max(worst, abs(v.mean().item() - m), abs(v.std(unbiased=False).item() - s))
        checks.add("VAE encoder: per-channel latent mean/std vs `medsynth reconstruct`", bool(ms_stats) and worst <= 1.5e-3,
                   f"{len(ms_stats)} channels, max difference {worst:.1e} (medsynth prints 3 decimals)")
        # b) decoder alone at 16 bits: `medsynth generate` on the VAE decodes prior draws z ~ N(0, I)
        idx = [0, 1, 2, 3]
        out = os.path.join(tmp, "vaegen")
        run([medsynth, "generate", "--model", vae_file, "--count", "4", "--seed", "7", "--bit-depth", "16", "--out", out] + quiet)
        z = sample_noise(7, idx, (vae.latent, vae.latent_size, vae.latent_size))
        with torch.no_grad():
            imgs = vae.dec(z).clamp(-1, 1)
        compare_generated(checks, "VAE decoder on prior draws vs `medsynth generate` (16-bit)", out, idx, imgs, 2e-4)
    if unet is not None and lvae is not None:
        bars = cosine_alpha_bars(dopts.get("timesteps", 1000), dopts.get("snrShift", 1.0))
        assert dopts.get("schedule", "cosine") == "cosine", "only the cosine schedule is reproduced here"
        target = dopts.get("target", "epsilon")
        shape = (lconf["autoencoder"]["latentChannels"],) + (lconf["unet"]["imageSize"],) * 2
        k = len(lconf.get("classNames", []))
        idx = [0, 1, 2, 3]
        labels = torch.tensor([i % k for i in idx]) if k else None     # generate cycles through the classes

        def denormalise(z):
            if lconf.get("latentChannelShift") is not None:
                sh = torch.tensor(lconf["latentChannelShift"]).view(1, -1, 1, 1)
                sc = torch.tensor(lconf["latentChannelScale"]).view(1, -1, 1, 1)
                return z / sc + sh
            return z / lconf["latentScale"]

        x = sample_noise(11, idx, shape)
        # c) one U-Net call: DDIM with 1 step visits t = T − 1 and returns the x₀ estimate, then decode
        out = os.path.join(tmp, "ddim1")
        run([medsynth, "generate", "--model", ld_file, "--count", "4", "--seed", "11", "--bit-depth", "16",
             "--sampler", "ddim", "--sampling-steps", "1", "--out", out] + quiet)
        with torch.no_grad():
            imgs = lvae.dec(denormalise(model_x0(unet, x, len(bars) - 1, labels, bars, target))).clamp(-1, 1)
        compare_generated(checks, f"latent U-Net (1 call, t = {len(bars) - 1}, {target}-prediction) + VAE decode vs `medsynth generate --sampler ddim --sampling-steps 1`",
                          out, idx, imgs, 2e-4)
        # d) the whole sampler of the dpm20 workload: DPM-Solver++(2M), 20 steps, guidance 1
        out = os.path.join(tmp, "dpm20")
        run([medsynth, "generate", "--model", ld_file, "--count", "4", "--seed", "11", "--bit-depth", "16",
             "--sampler", "dpm", "--sampling-steps", "20", "--out", out] + quiet)
        with torch.no_grad():
            imgs = lvae.dec(denormalise(dpm_solver_2m(unet, x, labels, bars, steps=20, target=target))).clamp(-1, 1)
        compare_generated(checks, "DPM-Solver++(2M) 20 steps + VAE decode vs `medsynth generate --sampler dpm --sampling-steps 20`",
                          out, idx, imgs, 5e-4)
        # e) the shipped U-Net's deepest levels (1×1 and 2×2 px, zero-initialised in training) barely
        # move its output: a 1 % change of up.0's first conv moves the images by ~3e-6. So the same
        # checks run once more on a copy of the model whose U-Net weights are random (PyTorch's init,
        # GroupNorm affines and class embedding perturbed too) — every layer then shapes the output —
        # with the trained VAE, and with ε-prediction as in the bench's dpm20 workload. There a 1 %
        # change of any single weight tensor tried (mida.qkv, up.0.res.0.c1, down.3.res.c1, label, ...)
        # moves the images by 1e-4 to 2e-2, above the tolerances.
        gen = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if p.dim() == 1 and (".n" in name or "out.0" in name or ".n1" in name or ".n2" in name):
                    p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
                elif p.dim() >= 2 or name.endswith("bias"):
                    bound = 1 / math.sqrt(max(1, p[0].numel())) if p.dim() >= 2 else 0.05
                    p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound * (1.0 if name != "label.weight" else 10.0))
        header, meta, load = read_safetensors(ld_file)
        tensors = {"U." + k: v for k, v in unet.state_dict().items()}
        tensors.update({k: load(k) for k in header if k.startswith("vae.")})
        for tgt, sampler_args, label in [("v", ["--sampler", "ddim", "--sampling-steps", "1"], "1 U-Net call (v)"),
                                         ("epsilon", ["--sampler", "dpm", "--sampling-steps", "20"], "DPM-Solver++(2M) 20 steps (ε)")]:
            m = dict(meta); o = dict(dopts); o["target"] = tgt; m["medsynth.diffusion"] = json.dumps(o)
            stress = os.path.join(tmp, f"stress-{tgt}.safetensors")
            write_safetensors(stress, m, tensors)
            out = os.path.join(tmp, f"stress-{tgt}")
            run([medsynth, "generate", "--model", stress, "--count", "4", "--seed", "11", "--bit-depth", "16", "--out", out] + sampler_args + quiet)
            with torch.no_grad():
                z = model_x0(unet, x, len(bars) - 1, labels, bars, tgt) if tgt == "v" else dpm_solver_2m(unet, x, labels, bars, 20, tgt)
                imgs = lvae.dec(denormalise(z)).clamp(-1, 1)
            unsaturated = (imgs.abs() < 0.999).float().mean().item()
            compare_generated(checks, f"random-weight U-Net, {label} + VAE decode vs `medsynth generate` "
                              f"({100 * unsaturated:.0f} % of pixels unsaturated)", out, idx, imgs, 2e-4 if tgt == "v" else 5e-4)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "bench"
    if mode == "check":
        check(sys.argv[2:])
    else:
        {"bench": bench, "params": params}[mode]()
