"""The general gradient-aggregation rules of multi-task learning, for two losses, per group.

Each rule maps the two gradients of a group, g_sim and g_reg (the rows of a 2 x n matrix
J), to one update. The reference implementations are torchjd 0.18's aggregators, called on
``torch.stack([g_sim, g_reg])`` with their defaults (CAGrad c = 0.5, NashMTL n_tasks = 2):
`oracle(rule)` builds them. torchjd solves a small programme per call (UPGrad and DualProj
a QP, CAGrad and NashMTL with cvxpy: milliseconds each), so calling it once per parameter
tensor would dominate a training step. Every rule here is instead a function of the group's
2 x 2 Gramian [[a, b], [b, c]] (a = |g_sim|^2, b = <g_sim, g_reg>, c = |g_reg|^2) giving
two weights per group, update = w_sim g_sim + w_reg g_reg, computed for all groups at once
with tensor operations (tests/unit/test_aggregators.py proves them equal to torchjd):

* ``upgrad``: each row's half projected onto the dual cone {x: <x, g_sim> >= 0, <x, g_reg> >= 0},
  summed; ``dualproj``: the mean projected. The projection is torchjd's QP (Gramian divided
  by its trace, zero below norm_eps = 1e-4, plus reg_eps = 1e-4 I) solved in closed form:
  for weights u >= 0 the solution keeps u or frees the one coordinate whose constraint binds.
* ``mgda``: the minimum-norm point of the segment [g_sim, g_reg] (Frank-Wolfe's fixed point).
* ``cagrad``: the 1-D convex problem over the segment solved exactly (its stationarity
  condition is a quadratic), the weights then 1/2 + sqrt(phi)/|J^T w| w.
* ``nashmtl``: the bargaining solution alpha_i (G alpha)_i = 1 that torchjd's programme
  reaches iteratively (warm-started from its previous weights, which is all its state), here
  exact, so no state is needed: for two rows |J^T alpha| = sqrt(2), and torchjd's max_norm 1
  clip makes the update the unit vector along u_sim + u_reg (u: the unit rows). Where the
  programme has no solution (a zero gradient, opposite gradients) the update is g_sim,
  clipped to norm 1.
* ``alignedmtl``: J^T B w, B = sqrt(lambda_min) V Lambda^(-1/2) V^T from the Gramian's eigen-
  decomposition (rank-aware as torchjd's); ``imtlg``: weights pinv(G) d / sum, d_i = |g_i|.
* ``pcgrad`` (symmetric): each row projected against the other when they conflict, summed.
* ``gradvac``: the vaccine correction towards an EMA target cosine; stateful: (G, 2, 2)
  targets per group, updated in place (the caller keeps them, e.g. in a checkpoint).
* ``config``: ConFIG for two rows, (|g_sim| + |g_reg|) / 2 (u_sim + u_reg), u the unit rows.

A mode is a rule name (every parameter tensor its own group, GSMorph's granularity) or the
name with ``-network`` (the whole network one group). Where |g_reg|^2 <= 1e-12 |g_sim|^2 the
smoothness gradient is taken as zero, as GSMorph's zero-gradient guard does.

Scale invariance (g_reg multiplied by k > 0): ``nashmtl`` gives the same update for every k
(the unit vector along u_sim + u_reg; its length is 1 whatever the gradients' scale);
``config`` and ``imtlg`` keep the direction (both fixed by the unit rows alone: ConFIG's is
u_sim + u_reg, IMTL-G's has equal projections on u_sim and u_reg) but not the length;
every other rule changes direction too. GSMorph's own rule (gsmorph.surgery, UPGrad with
preference [1, 0]) is invariant: it projects g_sim along g_reg's direction only.
"""
from __future__ import annotations

import torch

RULES = ("upgrad", "mgda", "cagrad", "nashmtl", "alignedmtl", "imtlg", "pcgrad", "gradvac", "dualproj", "config")
NETWORK = "-network"
MODES = RULES + tuple(rule + NETWORK for rule in RULES)
STATEFUL = ("gradvac",)
# what multiplying g_reg by k > 0 keeps: "update" (the whole update), "direction", or "nothing"
SCALE_INVARIANCE = ({rule: "nothing" for rule in RULES}
                    | {"config": "direction", "imtlg": "direction", "nashmtl": "update"})
CAGRAD_C = 0.5
NORM_EPS = REG_EPS = 1e-4   # torchjd's defaults (projector, CAGrad)
GRADVAC_BETA, GRADVAC_EPS = 0.5, 1e-8
NASH_MAX_NORM = 1.0
ZERO_EPS = 1e-12  # as gsmorph.surgery.ZERO_EPS


def rule_of(mode: str) -> str:
    """'upgrad-network' -> 'upgrad'; ValueError for a mode that is no aggregator's."""
    rule = mode[: -len(NETWORK)] if mode.endswith(NETWORK) else mode
    if rule not in RULES:
        raise ValueError(f"'{mode}' is not an aggregator mode (choose from {', '.join(MODES)})")
    return rule


def is_network(mode: str) -> bool:
    return mode.endswith(NETWORK)


def oracle(rule: str):
    """torchjd's aggregator of `rule` with the settings this module reproduces."""
    from torchjd import aggregation as agg

    makers = {"upgrad": agg.UPGrad, "mgda": agg.MGDA, "cagrad": lambda: agg.CAGrad(c=CAGRAD_C),
              "nashmtl": lambda: agg.NashMTL(n_tasks=2), "alignedmtl": agg.AlignedMTL, "imtlg": agg.IMTLG,
              "pcgrad": agg.PCGrad, "gradvac": agg.GradVac, "dualproj": agg.DualProj, "config": agg.ConFIG}
    return makers[rule]()


def new_state(rule: str, n_groups: int, dtype: torch.dtype, device) -> dict[str, torch.Tensor]:
    """The fresh state of a stateful rule for `n_groups` groups ({} for the others)."""
    if rule == "gradvac":
        return {"phi": torch.zeros(n_groups, 2, 2, dtype=dtype, device=device)}
    return {}


def weights(rule: str, sums: torch.Tensor, state: dict[str, torch.Tensor] | None = None,
            eps: float = ZERO_EPS) -> torch.Tensor:
    """(G, 2) weights (w_sim, w_reg) of each group from its (G, 3) sums <g_sim, g_reg>,
    |g_sim|^2, |g_reg|^2. state: the rule's state (see `new_state`), updated in place; a
    stateful rule without one starts from a fresh state."""
    dots, ss, rr = sums.unbind(1)
    zero_reg = rr <= eps * ss  # the smoothness gradient is zero up to rounding
    b, a, c = torch.where(zero_reg, 0.0, dots), ss, torch.where(zero_reg, 0.0, rr)
    if rule == "gradvac":
        state = {} if state is None else state
        if "phi" not in state:
            state.update(new_state(rule, len(sums), sums.dtype, sums.device))
        w = _gradvac(a, b, c, state["phi"])
    else:
        w = RULE_WEIGHTS[rule](a, b, c)
    return torch.stack([w[0], torch.where(zero_reg, 0.0, w[1])], 1).to(sums.dtype)


def apply_(s: torch.Tensor, r: torch.Tensor, w: torch.Tensor, row_group: torch.Tensor) -> None:
    """s <- w_sim s + w_reg r in place, (w_sim, w_reg) = w[group of each row]; s, r (rows, ROW)."""
    w = w.to(s.device, s.dtype)[row_group]
    s.mul_(w[:, :1]).addcmul_(r, w[:, 1:])


# ------------------------------------------------------------------ the rules
def _normalised(a, b, c):
    """torchjd's normalize (by the trace, zero below NORM_EPS) and regularize, in float64."""
    a, b, c = a.double(), b.double(), c.double()
    trace = a + c
    scale = torch.where(trace < NORM_EPS, 0.0, 1.0 / trace.clamp_min(torch.finfo(trace.dtype).tiny))
    return a * scale + REG_EPS, b * scale, c * scale + REG_EPS


def _project(u1: float, u2: float, a, b, c):
    """argmin v^T G v subject to v >= u (G = [[a, b], [b, c]] positive definite, u >= 0):
    v = u where G u >= 0, else the coordinate whose component of G u is negative is freed."""
    u1 = torch.full_like(a, u1)
    u2 = torch.full_like(a, u2)
    free2 = b * u1 + c * u2 < 0   # <x, g_reg> < 0 at x = J^T u: raise the weight on g_reg
    free1 = (a * u1 + b * u2 < 0) & ~free2
    v1 = torch.where(free1, -b * u2 / a, u1)
    v2 = torch.where(free2, -b * u1 / c, u2)
    return v1, v2


def _upgrad(a, b, c):
    a, b, c = _normalised(a, b, c)
    p1, p2 = _project(0.5, 0.0, a, b, c)
    q1, q2 = _project(0.0, 0.5, a, b, c)
    return p1 + q1, p2 + q2


def _dualproj(a, b, c):
    return _project(0.5, 0.5, *_normalised(a, b, c))


def _mgda(a, b, c):
    denom = a - 2 * b + c  # |g_sim - g_reg|^2
    t = torch.where(denom > 0, ((c - b) / denom.clamp_min(torch.finfo(a.dtype).tiny)).clamp(0, 1), 1.0)
    return t, 1 - t


def _cagrad(a, b, c):
    """min over w = (t, 1 - t) of <G 1/2, w> + phi sqrt(w^T G w), phi = c |J^T 1/2|, G the
    normalised Gramian: the minimum over t = 0, 1 and the roots of the stationarity
    condition squared (a quadratic in t)."""
    a, b, c = (x.double() for x in (a, b, c))
    trace = a + c
    scale = torch.where(trace < NORM_EPS, 0.0, 1.0 / trace.clamp_min(torch.finfo(trace.dtype).tiny))
    a, b, c = a * scale, b * scale, c * scale
    phi = CAGRAD_C * (0.25 * (a + 2 * b + c)).clamp_min(0).sqrt()
    k = 0.5 * (a + b) - 0.5 * (b + c)             # linear term: p . w = p2 + k t
    q2, q1, q0 = a - 2 * b + c, 2 * b - 2 * c, c  # w^T G w = q2 t^2 + q1 t + q0
    A2 = 4 * q2 * (k * k - phi * phi * q2)
    A1 = 4 * q1 * (k * k - phi * phi * q2)
    A0 = 4 * k * k * q0 - phi * phi * q1 * q1
    disc = (A1 * A1 - 4 * A2 * A0).clamp_min(0).sqrt()
    tiny = torch.finfo(a.dtype).tiny
    quad = A2.abs() > 1e-12 * (A1.abs() + A0.abs() + tiny)
    safe_a2 = torch.where(quad, A2, 1.0)
    r1 = torch.where(quad, (-A1 + disc) / (2 * safe_a2), -A0 / torch.where(A1 == 0, 1.0, A1))
    r2 = torch.where(quad, (-A1 - disc) / (2 * safe_a2), r1)
    cands = torch.stack([torch.zeros_like(a), torch.ones_like(a), r1.clamp(0, 1), r2.clamp(0, 1)], 1)
    qv = (q2[:, None] * cands ** 2 + q1[:, None] * cands + q0[:, None]).clamp_min(0)
    cost = k[:, None] * cands + phi[:, None] * qv.sqrt()
    best = cost.argmin(1, keepdim=True)
    t, gw = cands.gather(1, best)[:, 0], qv.gather(1, best)[:, 0].sqrt()
    ok = gw >= NORM_EPS
    f = torch.where(ok, phi / torch.where(ok, gw, 1.0), 0.0)
    return torch.where(ok, 0.5 + f * t, 0.0), torch.where(ok, 0.5 + f * (1 - t), 0.0)


def _nashmtl(a, b, c):
    """alpha_i (G alpha)_i = 1 (torchjd's constraints, the Gramian's normalisation factors
    cancelling) for two rows: alpha_i = 1 / sqrt(G_ii + b sqrt(G_ii / G_jj)); then
    |J^T alpha|^2 = alpha^T G alpha = 2 > max_norm^2, so the clip makes the update the unit
    vector along u_sim + u_reg."""
    tiny = torch.finfo(a.dtype).tiny
    solvable = (a > 0) & (c > 0)
    a_, c_ = a.clamp_min(tiny), c.clamp_min(tiny)
    d1 = a + b * (a_ / c_).sqrt()                           # = |g_sim|^2 (1 + cos)
    d2 = c + b * (c_ / a_).sqrt()
    solvable &= (d1 > 1e-6 * a) & (d2 > 1e-6 * c)           # not (numerically) opposite
    w1 = torch.where(solvable, 1 / d1.clamp_min(tiny).sqrt(), 1.0)
    w2 = torch.where(solvable, 1 / d2.clamp_min(tiny).sqrt(), 0.0)
    norm = (w1 * w1 * a + 2 * w1 * w2 * b + w2 * w2 * c).clamp_min(0).sqrt()
    clip = torch.where(norm > NASH_MAX_NORM, NASH_MAX_NORM / norm.clamp_min(tiny), 1.0)
    return w1 * clip, w2 * clip


def _alignedmtl(a, b, c):
    gram = torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)
    lam, vec = torch.linalg.eigh(gram, UPLO="U")   # ascending
    tol = lam.max(-1, keepdim=True).values * 2 * torch.finfo(gram.dtype).eps
    keep = lam > tol
    rank = keep.sum(-1)
    scale = torch.where(keep[:, 0], lam[:, 0], lam[:, 1])
    inv_sqrt = torch.where(keep, 1.0 / lam.clamp_min(torch.finfo(gram.dtype).tiny).sqrt(), 0.0)
    balance = scale.clamp_min(0).sqrt()[:, None, None] * (vec * inv_sqrt[:, None, :]) @ vec.transpose(1, 2)
    eye = torch.eye(2, dtype=gram.dtype, device=gram.device).expand_as(balance)
    balance = torch.where((rank == 0)[:, None, None], eye, balance)
    w = balance @ torch.full((2,), 0.5, dtype=gram.dtype, device=gram.device)
    return w[:, 0], w[:, 1]


def _imtlg(a, b, c):
    gram = torch.stack([torch.stack([a, b], -1), torch.stack([b, c], -1)], -2)
    d = torch.stack([a, c], -1).clamp_min(0).sqrt()
    v = (torch.linalg.pinv(gram) @ d[..., None])[..., 0]
    total = v.sum(-1, keepdim=True)
    w = torch.where(total.abs() < 1e-12, 0.0, v / torch.where(total.abs() < 1e-12, 1.0, total))
    return w[:, 0], w[:, 1]


def _pcgrad(a, b, c):
    tiny = torch.finfo(a.dtype).tiny
    conflict = b < 0
    return (torch.where(conflict, 1 - b / a.clamp_min(tiny), 1.0),
            torch.where(conflict, 1 - b / c.clamp_min(tiny), 1.0))


def _gradvac(a, b, c, phi_t: torch.Tensor):
    """torchjd's GradVac for two rows; phi_t (G, 2, 2) EMA targets, updated in place."""
    beta, eps = GRADVAC_BETA, GRADVAC_EPS
    na, nc = a.clamp_min(0).sqrt(), c.clamp_min(0).sqrt()
    cosine = b / (na * nc + eps)  # the same for (0, 1) and (1, 0)

    def correction(norm_i, norm_j, hat):
        s_phi = (1 - cosine * cosine).clamp_min(0).sqrt()
        s_hat = (1 - hat * hat).clamp_min(0).sqrt()
        w = norm_i * (hat * s_phi - cosine * s_hat) / (norm_j * s_hat + eps)
        return torch.where(cosine < hat, w, 0.0)

    hat01, hat10 = phi_t[:, 0, 1].clone(), phi_t[:, 1, 0].clone()
    w01 = correction(na, nc, hat01)   # row 0 (g_sim) gains w01 g_reg
    w10 = correction(nc, na, hat10)   # row 1 (g_reg) gains w10 g_sim
    phi_t[:, 0, 1] = (1 - beta) * hat01 + beta * cosine
    phi_t[:, 1, 0] = (1 - beta) * hat10 + beta * cosine
    return 1 + w10, 1 + w01


def _config(a, b, c):
    n1, n2 = a.clamp_min(0).sqrt(), c.clamp_min(0).sqrt()
    tiny = torch.finfo(a.dtype).tiny
    both = (n1 > 0) & (n2 > 0)
    half = 0.5 * (n1 + n2)
    w1 = torch.where(both, half / n1.clamp_min(tiny), (n1 > 0).to(a.dtype))
    w2 = torch.where(both, half / n2.clamp_min(tiny), ((n1 == 0) & (n2 > 0)).to(a.dtype))
    return w1, w2


RULE_WEIGHTS = {"upgrad": _upgrad, "mgda": _mgda, "cagrad": _cagrad, "nashmtl": _nashmtl, "alignedmtl": _alignedmtl,
                "imtlg": _imtlg, "pcgrad": _pcgrad, "dualproj": _dualproj, "config": _config}
