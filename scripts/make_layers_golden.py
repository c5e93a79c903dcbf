#!/usr/bin/env python3
"""Golden data for Tests/LayersTests (run once; outputs are committed):
  - safetensors_from_python.safetensors: tensors of several dtypes written by Python's safetensors
  - adam_golden.json: parameters after Adam / AdamW steps computed by torch.optim
Usage: python3 scripts/make_layers_golden.py   (needs torch, safetensors)"""
import json, os
import torch
from safetensors.torch import save_file

out = os.path.join(os.path.dirname(__file__), "..", "Tests", "LayersTests", "Fixtures")
os.makedirs(out, exist_ok=True)
save_file({
    "conv.weight": torch.arange(24, dtype=torch.float32).reshape(2, 3, 2, 2) / 8 - 1,
    "half": torch.tensor([0.5, -2.0, 1024.0, 3.140625], dtype=torch.float16),
    "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    "double": torch.tensor([[1.25, -3.5]], dtype=torch.float64),
}, os.path.join(out, "safetensors_from_python.safetensors"), metadata={"made_by": "make_layers_golden.py"})

grads = [[0.1, -0.2, 0.3], [-0.5, 0.4, 0.0], [1.0, 1.0, -1.0]]
golden = {"grads": grads, "initial": [0.5, -1.0, 2.0]}
for name, make in [("adam", lambda p: torch.optim.Adam([p], lr=0.1, betas=(0.5, 0.999))),
                   ("adamw", lambda p: torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.999), weight_decay=0.1))]:
    p = torch.tensor(golden["initial"], requires_grad=True)
    opt = make(p)
    steps = []
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        steps.append(p.detach().tolist())
    golden[name] = steps
with open(os.path.join(out, "adam_golden.json"), "w") as f:
    json.dump(golden, f, indent=1)
print("wrote", out)
