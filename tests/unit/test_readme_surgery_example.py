"""The README's "gradient surgery in your own network" example runs as written."""
from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_surgery_example_trains_a_step():
    text = README.read_text()
    section = text.split("## Gradient surgery in your own network", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    torch.manual_seed(0)
    loader = [(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32))]
    scope = {"loader": loader}
    exec(compile(code, str(README), "exec"), scope)
    model, stats = scope["model"], scope["stats"]
    n_tensors = sum(1 for p in model.parameters() if p.requires_grad)
    assert stats.cosine.shape == (1, n_tensors)  # one group per parameter tensor
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
