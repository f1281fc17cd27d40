"""Gradient surgery between a similarity (primary) loss and smoothness (auxiliary) losses.

The rule (GSMorph, MICCAI 2023), applied per group of parameter tensors with g_sim and
g_reg the two gradients restricted to the group:

* <g_sim, g_reg> >= 0                      -> keep g_sim
* ||g_reg||^2 <= eps * ||g_sim||^2          -> keep g_sim (the smoothness gradient is zero up
                                               to float rounding, e.g. a flow head's bias)
* otherwise                                -> g_sim - <g_sim, g_reg> / ||g_reg||^2 * g_reg

The smoothness gradient itself is never added. Modes:

* ``layerwise``: every parameter tensor is a group (GSMorph);
* ``module``: the tensors of one module (a layer's weight and bias) form a group;
* ``network``: the whole network is one group (GS-PCGrad);
* ``agr``: element-wise sign agreement: keep a component of g_sim where its sign equals
  that of g_reg, else 0 (GS-Agr; a tensor whose g_reg is zero up to rounding keeps g_sim);
* ``weighted``: g_sim + lam * g_reg (the usual weighted loss).

Groups never need the network's gradients concatenated: per-tensor inner products are
stacked and summed per group with ``index_add``, so every mode costs a few batched
reductions and one fused update, with no host synchronisation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

MODES = ("layerwise", "module", "network", "agr", "weighted")
GS_MODES = ("layerwise", "module", "network", "agr")
ZERO_EPS = 1e-12  # relative threshold on squared norms: ||g_reg||^2 <= eps * ||g_sim||^2


@dataclass
class SurgeryStats:
    """Per-group conflict statistics of one step, as tensors (no host sync).

    names: one name per group.
    cosine: (n_aux, n_groups) float, cosine between the primary gradient (as projected so
        far) and the k-th auxiliary gradient; 0 where the auxiliary gradient is zero up to
        rounding (||g_reg||^2 <= eps ||g_sim||^2).
    conflict: (n_aux, n_groups) bool, True where the group was projected (or, for
        ``agr``, where the inner product was negative).
    Both are None in ``weighted`` mode, where the two gradients are never formed.
    """

    names: list[str]
    cosine: torch.Tensor | None
    conflict: torch.Tensor | None


def module_groups(names: Sequence[str]) -> list[list[int]]:
    """Index lists grouping parameter names by owning module ('a.b.weight', 'a.b.bias' -> one)."""
    order: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        order.setdefault(owner, []).append(i)
    return list(order.values())


def _group_ids(n: int, mode: str, groups: Sequence[Sequence[int]] | None, device) -> tuple[torch.Tensor, int]:
    """A (n,) long tensor mapping each tensor to its group, and the number of groups."""
    if mode != "module" and groups is not None:
        raise ValueError(f"`groups` is only used by mode 'module', not '{mode}'")
    if mode in ("layerwise", "agr"):
        return torch.arange(n, device=device), n
    if mode == "network":
        return torch.zeros(n, dtype=torch.long, device=device), 1
    if groups is None:
        raise ValueError("mode 'module' needs `groups` (index lists, e.g. from module_groups(names))")
    ids = [-1] * n
    for g, members in enumerate(groups):
        for i in members:
            if not 0 <= i < n or ids[i] != -1:
                raise ValueError(f"groups: index {i} is out of range or in two groups")
            ids[i] = g
    if -1 in ids:
        raise ValueError(f"groups: tensor {ids.index(-1)} is in no group")
    return torch.tensor(ids, dtype=torch.long, device=device), len(groups)


def _project(sim: list[torch.Tensor], reg: list[torch.Tensor], mode: str, gid: torch.Tensor,
             n_groups: int, eps: float, inplace: bool):
    """One projection of `sim` against `reg`; returns (updates, cosine (G,), conflict (G,))."""
    dots = torch.stack([torch.vdot(s.reshape(-1), r.reshape(-1)) for s, r in zip(sim, reg)])
    ss = torch.stack(torch._foreach_norm(sim)).square()
    rr = torch.stack(torch._foreach_norm(reg)).square()
    dots = torch.zeros(n_groups, dtype=dots.dtype, device=dots.device).index_add_(0, gid, dots)
    ss = torch.zeros_like(dots).index_add_(0, gid, ss)
    rr = torch.zeros_like(dots).index_add_(0, gid, rr)
    has_reg = rr > eps * ss
    # |s| |r| as a product of roots: ss * rr underflows in float32 for gradients ~1e-13
    denom = ss.sqrt() * rr.sqrt()
    cosine = torch.where(has_reg, (dots / denom.clamp_min(torch.finfo(dots.dtype).tiny)).clamp(-1, 1),
                         torch.zeros_like(dots))
    conflict = (dots < 0) & has_reg
    if mode == "agr":
        keep = [((torch.sign(s) == torch.sign(r)) | ~h).to(s.dtype)
                for s, r, h in zip(sim, reg, has_reg[gid].unbind())]
        if inplace:
            torch._foreach_mul_(sim, keep)
            return sim, cosine, conflict
        return torch._foreach_mul(sim, keep), cosine, conflict
    coef = torch.where(conflict, dots / rr.clamp_min(torch.finfo(rr.dtype).tiny), torch.zeros_like(dots))
    per_tensor = list(coef.neg()[gid].unbind())  # 0-d tensors, broadcast by the fused op
    if inplace:
        torch._foreach_addcmul_(sim, reg, per_tensor)
        return sim, cosine, conflict
    return torch._foreach_addcmul(sim, reg, per_tensor), cosine, conflict


def combine(g_sim: Sequence[torch.Tensor | None], g_reg: Sequence[torch.Tensor | None], mode: str,
            lam: float | None = None, groups: Sequence[Sequence[int]] | None = None,
            eps: float = ZERO_EPS) -> list[torch.Tensor | None]:
    """The update for each parameter tensor from its similarity and smoothness gradients.

    g_sim, g_reg: equal-length lists of tensors (same shapes pairwise); None means "no
        gradient" (treated as zeros). The result is None exactly where both are None.
    mode: one of MODES. lam: the weight, for ``weighted`` only. groups: index lists that
        partition the tensors, for ``module`` only (see `module_groups`).
    """
    out, _ = _combine(list(g_sim), [list(g_reg)], mode, lam, groups, eps, inplace=False)
    return out


def _combine(g_sim, g_regs, mode, lam, groups, eps, inplace, group_ids=None):
    """combine() for several auxiliary gradients; `group_ids` (gid, n_groups) may be given
    precomputed on the gradients' device (GradientSurgery caches it)."""
    if mode not in MODES:
        raise ValueError(f"unknown surgery mode '{mode}' (choose from {', '.join(MODES)})")
    n = len(g_sim)
    if any(len(g) != n for g in g_regs):
        raise ValueError("g_sim and g_reg must have the same number of tensors")
    result: list[torch.Tensor | None] = [None] * n
    if mode == "weighted":
        lams = _lams(lam, len(g_regs))
        for i in range(n):
            total = g_sim[i]
            for g, w in zip(g_regs, lams):
                if g[i] is not None:
                    total = w * g[i] if total is None else total + w * g[i]
            result[i] = total
        return result, (None, None)
    # tensors with any gradient; all-None ones stay None
    present = [i for i in range(n) if g_sim[i] is not None or any(g[i] is not None for g in g_regs)]
    if not present:
        return result, (None, None)
    ref = [next(t for t in [g_sim[i]] + [g[i] for g in g_regs] if t is not None) for i in present]
    cur = [g_sim[i] if g_sim[i] is not None else torch.zeros_like(r) for i, r in zip(present, ref)]
    gid, n_groups = group_ids if group_ids is not None else _group_ids(n, mode, groups, cur[0].device)
    gid = gid[torch.tensor(present, device=gid.device)] if len(present) < n else gid
    cosines, conflicts = [], []
    for k, g_reg in enumerate(g_regs):
        reg = [g_reg[i] if g_reg[i] is not None else torch.zeros_like(r) for i, r in zip(present, ref)]
        cur, cos, conf = _project(cur, reg, mode, gid, n_groups, eps, inplace=inplace or k > 0)
        cosines.append(cos)
        conflicts.append(conf)
    for i, t in zip(present, cur):
        result[i] = t
    return result, (torch.stack(cosines), torch.stack(conflicts))


def _lams(lam, n_aux: int) -> list[float]:
    if lam is None:
        raise ValueError("mode 'weighted' needs lam")
    lams = list(lam) if isinstance(lam, (list, tuple)) else [lam] * n_aux
    if len(lams) != n_aux:
        raise ValueError(f"lam has {len(lams)} values for {n_aux} auxiliary losses")
    return [float(x) for x in lams]


class GradientSurgery:
    """Fills ``.grad`` of a model's parameters with the surgery update of several losses.

    >>> surgery = GradientSurgery(model, mode="layerwise")
    >>> optimizer.zero_grad()
    >>> stats = surgery.backward(sim_loss, reg_loss)   # or (sim, reg, dice, ...)
    >>> optimizer.step()

    model_or_params: an nn.Module (groups get parameter names) or an iterable of
        parameters (groups are named 'param<i>'; mode 'module' then needs `groups`).
    mode: one of MODES. lam: weight(s) for ``weighted`` (one float, or one per aux loss).
    batched_vjp: compute all gradients with one batched VJP (``is_grads_batched``);
        exact either way, faster only on some GPUs, slower on CPU.

    Like ``loss.backward()``, the update is added to existing ``.grad`` (zero them first);
    a parameter that no loss reaches keeps its ``.grad`` (None after ``zero_grad()``).
    With several auxiliary losses the primary gradient is projected against each
    conflicting one in turn, in the order given.
    """

    def __init__(self, model_or_params, mode: str = "layerwise", lam=None,
                 groups: Sequence[Sequence[int]] | None = None, eps: float = ZERO_EPS,
                 batched_vjp: bool = False):
        if mode not in MODES:
            raise ValueError(f"unknown surgery mode '{mode}' (choose from {', '.join(MODES)})")
        if isinstance(model_or_params, torch.nn.Module):
            named = [(n, p) for n, p in model_or_params.named_parameters() if p.requires_grad]
        else:
            named = [(f"param{i}", p) for i, p in enumerate(model_or_params) if p.requires_grad]
        if not named:
            raise ValueError("GradientSurgery: no parameters that require grad")
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.mode, self.lam, self.eps, self.batched_vjp = mode, lam, eps, batched_vjp
        self._group_ids: dict[torch.device, tuple[torch.Tensor, int]] = {}
        if mode == "weighted" and lam is None:
            raise ValueError("mode 'weighted' needs lam")
        if mode == "module":
            self.groups = [list(g) for g in groups] if groups is not None else module_groups(self.param_names)
            _group_ids(len(self.params), mode, self.groups, "cpu")  # validate now
        else:
            self.groups = None
        if mode in ("layerwise", "agr"):
            self.group_names = list(self.param_names)
        elif mode == "network":
            self.group_names = ["network"]
        elif mode == "module":
            self.group_names = [self._group_name([self.param_names[i] for i in g]) for g in self.groups]
        else:
            self.group_names = []

    @staticmethod
    def _group_name(names: list[str]) -> str:
        owners = {n.rsplit(".", 1)[0] if "." in n else n for n in names}
        return owners.pop() if len(owners) == 1 else "+".join(names)

    def _grads(self, losses: list[torch.Tensor]) -> list[list[torch.Tensor | None]]:
        if self.batched_vjp and len(losses) > 1:
            stacked = torch.stack([loss.reshape(()) for loss in losses])
            eye = torch.eye(len(losses), dtype=stacked.dtype, device=stacked.device)
            rows = torch.autograd.grad(stacked, self.params, grad_outputs=eye, is_grads_batched=True,
                                       allow_unused=True)
            return [[None if g is None else g[k] for g in rows] for k in range(len(losses))]
        out = []
        for k, loss in enumerate(losses):
            out.append(list(torch.autograd.grad(loss, self.params, retain_graph=k < len(losses) - 1,
                                                allow_unused=True)))
        return out

    def backward(self, primary_loss: torch.Tensor, *aux_losses: torch.Tensor) -> SurgeryStats:
        """Two (or 1 + n_aux) VJPs, the surgery, and ``.grad`` filled; returns the stats."""
        if not aux_losses:
            raise ValueError("GradientSurgery.backward needs at least one auxiliary loss")
        if self.mode == "weighted":
            lams = _lams(self.lam, len(aux_losses))
            total = primary_loss + sum(w * a for w, a in zip(lams, aux_losses))
            update = torch.autograd.grad(total, self.params, allow_unused=True)
            self._accumulate(update)
            return SurgeryStats(names=[], cosine=None, conflict=None)
        grads = self._grads([primary_loss, *aux_losses])
        device = self.params[0].device
        if device not in self._group_ids:  # built once per device: no per-step host-to-device copy
            self._group_ids[device] = _group_ids(len(self.params), self.mode, self.groups, device)
        update, (cosine, conflict) = _combine(grads[0], grads[1:], self.mode, None, self.groups,
                                              self.eps, inplace=True, group_ids=self._group_ids[device])
        self._accumulate(update)
        return SurgeryStats(names=list(self.group_names), cosine=cosine, conflict=conflict)

    def _accumulate(self, update: Iterable[torch.Tensor | None]) -> None:
        for p, u in zip(self.params, update):
            if u is None:
                continue
            if p.grad is None:
                p.grad = u.detach()
            else:
                p.grad.add_(u)


@dataclass
class ConflictTracker:
    """Sums per-group stats over steps on the device; one host transfer per `rows()` call."""

    names: list[str] = field(default_factory=list)
    n_steps: int = 0
    _conflict: torch.Tensor | None = None
    _cosine: torch.Tensor | None = None

    def add(self, stats: SurgeryStats) -> None:
        """Adds one step (auxiliary loss 0 if there are several)."""
        if stats.cosine is None:
            return
        conflict, cosine = stats.conflict[0].to(stats.cosine.dtype), stats.cosine[0].detach()
        if self._conflict is None:
            self.names, self._conflict, self._cosine = list(stats.names), conflict.clone(), cosine.clone()
        else:
            self._conflict += conflict
            self._cosine += cosine
        self.n_steps += 1

    def rows(self, epoch: int) -> list[dict]:
        """Rows for conflicts.csv (epoch, group, n_steps, conflict_frac, cosine_mean); resets."""
        if self._conflict is None or self.n_steps == 0:
            return []
        frac = (self._conflict / self.n_steps).tolist()
        cos = (self._cosine / self.n_steps).tolist()
        rows = [{"epoch": epoch, "group": name, "n_steps": self.n_steps, "conflict_frac": f, "cosine_mean": c}
                for name, f, c in zip(self.names, frac, cos)]
        self.n_steps, self._conflict, self._cosine = 0, None, None
        return rows
