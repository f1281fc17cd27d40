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
* ``weighted``: g_sim + lam * g_reg (the usual weighted loss);
* the general gradient-aggregation rules of gsmorph.aggregators (``upgrad``, ``mgda``, ...
  per parameter tensor, ``upgrad-network``, ... on the whole network): w_sim g_sim + w_reg g_reg
  with per-group weights from the group's sums (one auxiliary loss only).

The engine copies each loss's gradients into one flat buffer of (rows, ROW) elements per
dtype and device, every tensor starting on a new row (the rest of its last row is zero
padding). The per-group sums <g_sim, g_reg>, ||g_sim||^2, ||g_reg||^2 are then three row
reductions and one ``index_add_`` from rows into groups, and the update is one broadcast
``addcmul_`` (``agr``: one masked multiply) over the whole buffer. `combine` returns views
of a new buffer; `GradientSurgery` keeps its buffers between steps and copies the update
back into the similarity gradients with one fused copy. The number of kernels is the same
for 10 or 1000 parameter tensors, and nothing is read back to the host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Iterable, Sequence

import torch
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from gsmorph import aggregators

MODES = ("layerwise", "module", "network", "agr", "weighted") + aggregators.MODES
GS_MODES = ("layerwise", "module", "network", "agr")
ZERO_EPS = 1e-12  # relative threshold on squared norms: ||g_reg||^2 <= eps * ||g_sim||^2
ROW = 256  # elements per row of the flat gradient buffers (padding: < ROW per tensor)


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


def _tensor_groups(n: int, mode: str, groups: Sequence[Sequence[int]] | None) -> tuple[list[int], int]:
    """The group of each of `n` tensors, and the number of groups."""
    if mode != "module" and mode != "weighted" and groups is not None:
        raise ValueError(f"`groups` is only used by mode 'module', not '{mode}'")
    if mode in ("layerwise", "agr") or (mode in aggregators.MODES and not aggregators.is_network(mode)):
        return list(range(n)), n
    if mode in ("network", "weighted") or mode in aggregators.MODES:
        return [0] * n, 1
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
    return ids, len(groups)


class _Layout:
    """Where the tensors of one dtype and device sit in a flat (rows, ROW) buffer.

    Every tensor starts on a new row and the rest of its last row is zero, so a row never
    mixes two tensors: per-row sums add up to per-tensor sums, and a per-row coefficient
    broadcasts over a tensor. index: the tensors' positions in the full list; row_group:
    (rows,) long on the device, the group of each row (built once). Named persistent
    buffers (`flatten_into`, `scratch`) spare a training loop one fresh allocation per
    buffer and step, which on a CPU costs page faults comparable to the work itself.
    """

    def __init__(self, index: Sequence[int], refs: Sequence[torch.Tensor], tensor_group: Sequence[int]):
        self.index = list(index)
        self.dtype, self.device = refs[0].dtype, refs[0].device
        self.shapes = [r.shape for r in refs]
        rows = [-(-r.numel() // ROW) for r in refs]
        self.rows = sum(rows)
        pads = [k * ROW - r.numel() for k, r in zip(rows, refs)]
        self._zero = torch.zeros(ROW, dtype=self.dtype, device=self.device)
        self._pieces = [piece for p in pads for piece in (None, self._zero[:p])]
        self._templates = [t for r, p in zip(refs, pads)
                           for t in (torch.empty(r.shape, device="meta"), torch.empty(p, device="meta"))]
        self.row_group = torch.repeat_interleave(torch.tensor(tensor_group, dtype=torch.long),
                                                 torch.tensor(rows, dtype=torch.long)).to(self.device)
        ends = torch.tensor([0] + rows).cumsum(0)[1:] * ROW
        self._pad_index = torch.cat([torch.arange(end - p, end) for end, p in zip(ends.tolist(), pads)]
                                    + [torch.zeros(0, dtype=torch.long)]).to(self.device)
        self._buffers: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def flatten(self, grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """A new (rows, ROW) buffer holding `grads` (aligned with `index`; None: zeros)."""
        flat = _flatten_dense_tensors(self._with_pads(grads))  # >= 2 pieces: a copy, never a view
        if flat.dtype != self.dtype or flat.device != self.device:
            raise ValueError(f"gradients of {flat.dtype} on {flat.device} do not match the tensors "
                             f"({self.dtype} on {self.device})")
        return flat.view(self.rows, ROW)

    def flatten_into(self, name: str, grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """As `flatten`, into the persistent buffer `name`: one fused copy, and the padding
        set to zero again (an update with a non-finite coefficient would leave NaN there)."""
        flat = self.scratch(name)
        torch._foreach_copy_(self.views(name), [g if g is not None else self._zeros(shape)
                                                for g, shape in zip(grads, self.shapes)])
        if self._pad_index.numel():
            flat.view(-1).index_fill_(0, self._pad_index, 0)
        return flat

    def scratch(self, name: str) -> torch.Tensor:
        """The persistent (rows, ROW) buffer `name` (created on first use; contents undefined)."""
        if name not in self._buffers:
            flat = torch.zeros(self.rows, ROW, dtype=self.dtype, device=self.device)
            self._buffers[name] = flat, self.unflatten(flat)
        return self._buffers[name][0]

    def views(self, name: str) -> list[torch.Tensor]:
        """Views of the persistent buffer `name`, one per tensor (made once)."""
        self.scratch(name)
        return self._buffers[name][1]

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of a (rows, ROW) buffer, one per tensor, with the tensors' shapes."""
        return _unflatten_dense_tensors(flat.view(-1), self._templates)[0::2]

    def _with_pads(self, grads: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
        """[grad 0, padding 0, grad 1, padding 1, ...] with zeros for a missing gradient."""
        pieces = list(self._pieces)
        pieces[0::2] = [g if g is not None else self._zeros(shape) for g, shape in zip(grads, self.shapes)]
        return pieces

    def _zeros(self, shape: torch.Size) -> torch.Tensor:
        """Zeros of `shape`, a view of a cached buffer (for a tensor without a gradient)."""
        n = shape.numel()
        if self._zero.numel() < n:
            self._zero = torch.zeros(n, dtype=self.dtype, device=self.device)
        return self._zero[:n].view(shape)


def _layouts(index: Sequence[int], refs: Sequence[torch.Tensor], tensor_group: Sequence[int]) -> list[_Layout]:
    """One _Layout per (device, dtype) of the tensors `refs` at positions `index`."""
    buckets: dict[tuple, list[int]] = {}
    for k, ref in enumerate(refs):
        buckets.setdefault((ref.device, ref.dtype), []).append(k)
    return [_Layout([index[k] for k in ks], [refs[k] for k in ks], [tensor_group[index[k]] for k in ks])
            for ks in buckets.values()]


def _row_sums(s: torch.Tensor, r: torch.Tensor, product: torch.Tensor | None = None) -> torch.Tensor:
    """(rows, 3): <s, r>, |s|^2, |r|^2 of each row of two (rows, ROW) buffers; `product`,
    if given, is a (rows, ROW) buffer to hold s * r."""
    return torch.stack([torch.mul(s, r, out=product).sum(1), torch.linalg.vector_norm(s, dim=1).square(),
                        torch.linalg.vector_norm(r, dim=1).square()], 1)


def _group_sums(layouts: list[_Layout], sims: list[torch.Tensor], regs: list[torch.Tensor],
                n_groups: int, reuse: bool) -> torch.Tensor:
    """(n_groups, 3): <s, r>, |s|^2, |r|^2 per group, summed over rows and layouts."""
    total = None
    for lay, s, r in zip(layouts, sims, regs):
        rows = _row_sums(s, r, lay.scratch("product") if reuse else None)
        sums = rows.new_zeros(n_groups, 3).index_add_(0, lay.row_group, rows)
        if total is None:
            total = sums
        else:
            dtype = torch.promote_types(total.dtype, sums.dtype)
            total = total.to(dtype) + sums.to(total.device, dtype)
    return total


def _rule(sums: torch.Tensor, eps: float):
    """From (G, 3) sums: per group (G,) coefficient c (update s - c r), cosine, conflict, has_reg."""
    dots, ss, rr = sums.unbind(1)
    has_reg = rr > eps * ss
    tiny = torch.finfo(sums.dtype).tiny
    # |s| |r| as a product of roots: ss * rr underflows in float32 for gradients ~1e-13
    denom = ss.sqrt() * rr.sqrt()
    cosine = torch.where(has_reg, (dots / denom.clamp_min(tiny)).clamp(-1, 1), 0.0)
    conflict = (dots < 0) & has_reg
    coef = torch.where(conflict, dots / rr.clamp_min(tiny), 0.0)
    return coef, cosine, conflict, has_reg


def _project_(s: torch.Tensor, r: torch.Tensor, neg_coef: torch.Tensor, row_group: torch.Tensor) -> None:
    """s -= c r in place, c the coefficient of each row's group; s, r (rows, ROW), neg_coef (G,)."""
    s.addcmul_(r, neg_coef.to(s.device, s.dtype)[row_group].unsqueeze(1))


def _agree_(s: torch.Tensor, r: torch.Tensor, has_reg: torch.Tensor, row_group: torch.Tensor) -> None:
    """Zeroes the components of s whose sign differs from r's, in groups with has_reg (G,)."""
    keep = torch.sign(s) == torch.sign(r)
    keep |= ~has_reg.to(s.device)[row_group].unsqueeze(1)
    s.mul_(keep)


def combine(g_sim: Sequence[torch.Tensor | None], g_reg: Sequence[torch.Tensor | None], mode: str,
            lam: float | None = None, groups: Sequence[Sequence[int]] | None = None,
            eps: float = ZERO_EPS, state: dict | None = None) -> list[torch.Tensor | None]:
    """The update for each parameter tensor from its similarity and smoothness gradients.

    g_sim, g_reg: equal-length lists of tensors (same shapes pairwise); None means "no
        gradient" (treated as zeros). The result is None exactly where both are None;
        the other results are new tensors (views of one buffer per dtype and device).
    mode: one of MODES. lam: the weight, for ``weighted`` only. groups: index lists that
        partition the tensors, for ``module`` only (see `module_groups`). state: a dict that
        a stateful aggregator mode (gsmorph.aggregators.STATEFUL) keeps its state in between
        calls (updated in place; None: a fresh state for this call).
    """
    out, _ = _combine(list(g_sim), [list(g_reg)], mode, lam, groups, eps, state=state)
    return out


def _combine(g_sim, g_regs, mode, lam, groups, eps, layouts=None, reuse=False, step=None, state=None):
    """combine() for several auxiliary gradients, projected in turn; returns (updates,
    (cosine, conflict)), each (n_aux, G). `layouts` (list of _Layout, n_groups) may be given
    precomputed for all tensors (GradientSurgery caches them). reuse: work in the layouts'
    persistent buffers and write the updates into the tensors of `g_sim` where possible
    (for a caller that owns them) instead of returning views of new buffers. step: a
    replacement for `_step_` (e.g. a _CapturedStep). state: an aggregator's state (`combine`)."""
    if mode not in MODES:
        raise ValueError(f"unknown surgery mode '{mode}' (choose from {', '.join(MODES)})")
    if mode in aggregators.MODES and len(g_regs) != 1:
        raise ValueError(f"mode '{mode}' combines two gradients: one auxiliary loss, not {len(g_regs)}")
    n = len(g_sim)
    if any(len(g) != n for g in g_regs):
        raise ValueError("g_sim and g_reg must have the same number of tensors")
    lams = _lams(lam, len(g_regs)) if mode == "weighted" else [None] * len(g_regs)
    has = [t is not None for t in g_sim]
    for g_reg in g_regs:
        has = [h or t is not None for h, t in zip(has, g_reg)]
    if layouts is None:
        layouts = _layouts_of_gradients(g_sim, g_regs, has, mode, groups)
    if not any(has):
        return [None] * n, (None, None)
    layouts, n_groups = layouts

    def flat(lay, grads, name):
        picked = [grads[i] for i in lay.index]
        return lay.flatten_into(name, picked) if reuse else lay.flatten(picked)

    with torch.no_grad():
        sims = [flat(lay, g_sim, "sim") for lay in layouts]
        if mode in aggregators.MODES:
            step = partial(_aggregate_, state={} if state is None else state)
        step = step or _step_
        stats = [step(layouts, sims, [flat(lay, g_reg, "reg") for lay in layouts], mode, w, n_groups, eps,
                      reuse) for g_reg, w in zip(g_regs, lams)]
        views = [lay.views("sim") if reuse else lay.unflatten(s) for lay, s in zip(layouts, sims)]
        result = _results(layouts, views, has, g_sim if reuse else None)
    if mode == "weighted":
        return result, (None, None)
    return result, (torch.stack([c for c, _ in stats]), torch.stack([c for _, c in stats]))


def _layouts_of_gradients(g_sim, g_regs, has, mode, groups) -> tuple[list[_Layout], int]:
    """Layouts of the tensors that have a gradient (shapes from the first one given)."""
    tensor_group, n_groups = _tensor_groups(len(g_sim), mode, groups)
    present = [i for i, h in enumerate(has) if h]
    refs = [next(t for t in [g_sim[i]] + [g[i] for g in g_regs] if t is not None) for i in present]
    return (_layouts(present, refs, tensor_group) if present else []), n_groups


def _step_(layouts, sims, regs, mode, lam, n_groups, eps, reuse):
    """Updates the flat primary gradients `sims` in place against one auxiliary gradient;
    returns (cosine, conflict), each (G,), or None in ``weighted`` mode."""
    if mode == "weighted":
        for s, r in zip(sims, regs):
            s.add_(r, alpha=lam)
        return None
    coef, cosine, conflict, has_reg = _rule(_group_sums(layouts, sims, regs, n_groups, reuse), eps)
    neg_coef = coef.neg()
    for lay, s, r in zip(layouts, sims, regs):
        if mode == "agr":
            _agree_(s, r, has_reg, lay.row_group)
        else:
            _project_(s, r, neg_coef, lay.row_group)
    return cosine, conflict


def _aggregate_(layouts, sims, regs, mode, lam, n_groups, eps, reuse, state):
    """`_step_` for an aggregator mode: s <- w_sim s + w_reg r per group; state: the rule's
    state (gsmorph.aggregators.new_state), updated in place."""
    sums = _group_sums(layouts, sims, regs, n_groups, reuse)
    _, cosine, conflict, _ = _rule(sums, eps)
    w = aggregators.weights(aggregators.rule_of(mode), sums, state, eps)
    for lay, s, r in zip(layouts, sims, regs):
        aggregators.apply_(s, r, w, lay.row_group)
    return cosine, conflict


class _CapturedStep:
    """`_step_` on persistent buffers, run eagerly once, then captured in a CUDA graph and
    replayed: one launch instead of about 28 small kernels. The statistics are copied out
    of the graph's static outputs. Only for layouts on one CUDA device."""

    def __init__(self):
        self.graph = None
        self.outputs = None

    def __call__(self, layouts, sims, regs, mode, lam, n_groups, eps, reuse):
        if self.graph is None:
            stats = _step_(layouts, sims, regs, mode, lam, n_groups, eps, reuse)  # also the warm-up
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # recorded, not run: the buffers keep this step's result
                self.outputs = _step_(layouts, sims, regs, mode, lam, n_groups, eps, reuse)
            self.graph = graph
            return stats
        self.graph.replay()
        return tuple(t.clone() for t in self.outputs)


def _results(layouts, views, has, into) -> list[torch.Tensor | None]:
    """The updates in tensor order, None where a tensor has no gradient: the views given,
    or, with `into` (a list of tensors), the views copied into those that are contiguous
    (one fused copy per layout) and copies of the others."""
    result: list[torch.Tensor | None] = [None] * len(has)
    for lay, lay_views in zip(layouts, views):
        dst = None if into is None else [into[i] for i in lay.index]
        if dst is not None and all(t is not None and t.is_contiguous() for t in dst):
            torch._foreach_copy_(dst, lay_views)  # the usual case: every tensor written in place
            for i, t in zip(lay.index, dst):
                result[i] = t
            continue
        dst, src = [], []
        for i, view in zip(lay.index, lay_views):
            if not has[i]:
                continue
            if into is None:
                result[i] = view
            elif into[i] is not None and into[i].is_contiguous():  # not e.g. an expanded gradient
                result[i] = into[i]
                dst.append(into[i])
                src.append(view)
            else:
                result[i] = view.clone()
        if dst:
            torch._foreach_copy_(dst, src)
    return result


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
    cuda_graph: on a CUDA device, capture the surgery between the copies of the gradients
        into and out of the flat buffers in a CUDA graph on the first step and replay it
        afterwards (fewer kernel launches; the first step synchronises once). Ignored on
        other devices, in ``weighted`` and the aggregator modes and for a model of several dtypes.

    Like ``loss.backward()``, the update is added to existing ``.grad`` (zero them first);
    a parameter that no loss reaches keeps its ``.grad`` (None after ``zero_grad()``).
    With several auxiliary losses the primary gradient is projected against each
    conflicting one in turn, in the order given.

    Memory: per device and dtype of the model, three persistent buffers the size of the
    parameters (plus < 256 elements of padding per tensor) and one int64 per 256-element
    row, made on the first step; nothing grows with the number of steps.
    """

    def __init__(self, model_or_params, mode: str = "layerwise", lam=None,
                 groups: Sequence[Sequence[int]] | None = None, eps: float = ZERO_EPS,
                 batched_vjp: bool = False, cuda_graph: bool = False):
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
        self.cuda_graph = cuda_graph
        self._layouts: dict[tuple, tuple[list[_Layout], int]] = {}
        self._captured: dict[int, _CapturedStep] = {}  # by id of a cached layout
        self.state: dict[str, torch.Tensor] = {}  # a stateful aggregator's (see state_dict)
        if mode == "weighted" and lam is None:
            raise ValueError("mode 'weighted' needs lam")
        if mode == "module":
            self.groups = [list(g) for g in groups] if groups is not None else module_groups(self.param_names)
            _tensor_groups(len(self.params), mode, self.groups)  # validate now
        else:
            self.groups = None
        if mode in ("layerwise", "agr") or (mode in aggregators.MODES and not aggregators.is_network(mode)):
            self.group_names = list(self.param_names)
        elif mode == "network" or mode in aggregators.MODES:
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
        layouts = self._layout()
        update, (cosine, conflict) = _combine(grads[0], grads[1:], self.mode, None, self.groups,
                                              self.eps, layouts=layouts, reuse=True,
                                              step=self._captured_step(layouts[0]), state=self.state)
        del grads
        self._accumulate(update)
        return SurgeryStats(names=list(self.group_names), cosine=cosine, conflict=conflict)

    def _layout(self) -> tuple[list[_Layout], int]:
        """The flat layouts of the parameters and the number of groups, built once per
        device and dtype of the model (no per-step host-to-device copy)."""
        key = (self.params[0].device, self.params[0].dtype)
        if key not in self._layouts:
            tensor_group, n_groups = _tensor_groups(len(self.params), self.mode, self.groups)
            self._layouts[key] = _layouts(range(len(self.params)), self.params, tensor_group), n_groups
        return self._layouts[key]

    def _captured_step(self, layouts: list[_Layout]) -> _CapturedStep | None:
        """The CUDA-graph step for these layouts, if `cuda_graph` applies to them."""
        if (not self.cuda_graph or len(layouts) != 1 or layouts[0].device.type != "cuda"
                or self.mode in aggregators.MODES):
            return None
        return self._captured.setdefault(id(layouts[0]), _CapturedStep())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state a stateful aggregator mode keeps between steps ({} for the others), to
        save with a training checkpoint."""
        return {k: v.detach().clone() for k, v in self.state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        device = self.params[0].device
        self.state = {k: v.to(device) for k, v in state.items()}

    def _accumulate(self, update: Iterable[torch.Tensor | None]) -> None:
        """Sets ``.grad`` to the update where it is None, adds it (one fused op) elsewhere."""
        held, added = [], []
        for p, u in zip(self.params, update):
            if u is None:
                continue
            if p.grad is None:
                p.grad = u
            else:
                held.append(p.grad)
                added.append(u)
        if held:
            torch._foreach_add_(held, added)


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
