#!/usr/bin/env python3
"""Golden data for Tests/GeneratorsTests: reduced-width models from the PyTorch reference
(../shared/reference/torch_reference.py), their weights (rounded to float16 so the file is small
and both sides use exactly the same values) and their outputs on fixed inputs.
  dcgan_ngf8.safetensors: G.* and D.* weights (ngf = ndf = 8, 64 px, 1 channel)
  dcgan_ngf8_io.safetensors: z, x, G outputs (eval and train-mode BatchNorm), D logits (eval, train)
  unet_base8.safetensors: UNet(base 8, mults 1,2,4,4, attention at 4 px, 32 px, 2 classes) weights
  unet_base8_io.safetensors: x, t, y, output
Usage: python3 scripts/make_generator_golden.py   (needs torch, safetensors)"""
import os, sys
import torch
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "shared", "reference"))
import torch_reference as ref

out = os.path.join(here, "..", "Tests", "GeneratorsTests", "Fixtures")
os.makedirs(out, exist_ok=True)
torch.manual_seed(1234)

def rounded(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
        for name, b in module.named_buffers():
            if b.dtype == torch.float32:
                b.copy_(b.half().float())

def state(module, prefix):
    return {f"{prefix}.{k}": (v.half() if v.dtype == torch.float32 else v) for k, v in module.state_dict().items()}

G, D = ref.Generator(ngf=8), ref.Discriminator(ndf=8)
# Non-trivial BatchNorm state so eval mode is a real test.
with torch.no_grad():
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.1, 0.1); m.running_var.uniform_(0.5, 2.0)
rounded(G); rounded(D)
save_file({**state(G, "G"), **state(D, "D")}, os.path.join(out, "dcgan_ngf8.safetensors"))
z = torch.randn(3, 100, 1, 1)
x = torch.rand(3, 1, 64, 64) * 2 - 1
with torch.no_grad():
    G.eval(); D.eval()
    g_eval, d_eval = G(z), D(x)
    G.train(); D.train()
    g_train, d_train = G(z), D(x)
save_file({"z": z.reshape(3, 100).contiguous(), "x": x, "g_eval": g_eval, "g_train": g_train,
           "d_eval": d_eval, "d_train": d_train}, os.path.join(out, "dcgan_ngf8_io.safetensors"))

U = ref.UNet(base=8, attn_res=(4,), res=32, num_classes=2)
with torch.no_grad():
    for m in U.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
rounded(U)
save_file(state(U, "U"), os.path.join(out, "unet_base8.safetensors"))
ux = torch.randn(2, 1, 32, 32)
ut = torch.tensor([10, 700])
uy = torch.tensor([1, 2])
with torch.no_grad():
    uo = U(ux, ut, uy)
save_file({"x": ux, "t": ut.float(), "y": uy.float(), "out": uo}, os.path.join(out, "unet_base8_io.safetensors"))
print("wrote", out, "G params", sum(p.numel() for p in G.parameters()), "U params", sum(p.numel() for p in U.parameters()))
