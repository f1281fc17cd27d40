"""HyperMorph baseline: one network for every smoothness weight, lambda chosen on validation.

Config `hypermorph.variant` (VARIANTS; docs/hypermorph.md holds the ablation behind them):
default (the published loss with sigma estimated from the training pairs, `estimate_sigma`,
and a log-uniform equivalent weight, `LambdaScale`), published (below), gsmorph (the GSMorph
authors' update sim / 0.05^2 + lambda reg, one lambda per batch, l1 gradient loss, lambda
on [0, 1]). The hypernetwork's input is t in [0, 1]; `LambdaScale` maps it to the loss's
lambda (t = lambda for uniform sampling); the validation grids below are even in t.

As published (Hoopes et al. 2021/2022; voxelmorph's train_hypermorph.py, the TensorFlow code):
- hypernetwork: `hypermorph.layers` x Dense(`hypermorph.hidden`, ReLU), 6 x 128;
- each sample of a batch draws its own lambda: with probability `hypermorph.endpoint_prob`
  (0.2) from {0, 1} (each half), else uniform on [0, 1] (torch's global CPU generator, saved
  in last.pt, so a resumed run draws the same lambdas);
- loss = mean over the batch of (1 - lambda_i) * sim_i / sigma^2 + lambda_i * reg_i, the MSE
  similarity divided by `hypermorph.mse_sigma`^2 (LNCC is used as is); reg is HyperMorph's
  own smoothness loss `hypermorph.smoothness`, the l2 gradient (diffusion) loss by default,
  not the top-level `smoothness` of the other methods.

Choosing lambda (what inference uses and tables report):
- validation during training scores the coarse grid only (`hypermorph.val_lambdas` values
  evenly on [0, 1]; the best of them selects best.pt), which is cheaper;
- after training, with the best weights: the coarse grid, then a fine grid of
  `hypermorph.fine_lambdas` values evenly spaced strictly between the coarse neighbours of
  the coarse best (`fine_grid`); the lambda of highest validation Dice over both grids is
  run.json's and summary.json's `hyper_lambda`.
- whether the lambda-dependence was learned: at lambda 1 the loss is the smoothness alone,
  whose optimum is no deformation, so a trained network gives up its registration there.
  summary.json `hyper_lambda_effect` = (Dice(0) - Dice(1)) / (Dice(0) - Dice(no
  deformation)) on validation with the best weights: about 1 when learned, 0 when the
  network registers alike at every lambda (the trade-off of the MSE scaled by 1/sigma^2
  lies at lambda close to 1, a narrow step for the MLP of lambda to learn). Below
  LAMBDA_EFFECT_MIN the run's `caveat` says so (on stderr and in the report's table captions).
- `lambda_sweep.csv`: stage (coarse | fine), lam, weighted_equivalent, val_dice,
  val_njd_pct, chosen. weighted_equivalent = lambda sigma^2 / (1 - lambda) (MSE; lambda /
  (1 - lambda) for LNCC; infinite at 1) is the weight w of the weighted loss sim + w reg
  with the same, unscaled similarity and HyperMorph's smoothness loss. It compares with the
  weighted baselines' lambdas only when they use the same smoothness loss
  (summary.json `hyper_weighted_equivalent_comparable`).

Optimiser: the backbone's `optim` entry, with the keys of `hypermorph.optim` in their place
(paper.yaml: the public script's Adam at lr 1e-4).

The network is baselines.hypernet.HyperUNet (lambda is an argument of its forward) with the
voxelmorph backbone's level features (`hypermorph.features` overrides them), wrapped in
gsmorph's RegistrationNet for integration. The method table restricts it to VoxelMorph.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from baselines.hypernet import HyperUNet
from gsmorph.config import optim_settings
from gsmorph.errors import GSMorphError
from gsmorph.io import write_csv
from gsmorph.networks import RegistrationNet, assemble
from gsmorph.networks.voxelmorph import PRESETS
from gsmorph.training import Trainer, count_pairs

SWEEP_COLUMNS = ["stage", "lam", "weighted_equivalent", "val_dice", "val_njd_pct", "chosen", "hyper_input"]

# what a null key of config `hypermorph` means under each `hypermorph.variant`
VARIANTS: dict[str, dict] = {
    # the published loss and per-sample lambda with sigma estimated from the training pairs and
    # a log-uniform equivalent weight (both advised in voxelmorph issue 419), on a U-Net whose
    # channels lambda modulates (film): the combination that learns lambda in
    # docs/hypermorph.md's ablation
    "default": {"parametrisation": "film", "encoding": "lambda", "loss": "hoopes", "sampling": "log-weight",
                "weight_range": [1e-5, 10.0], "lambda_max": 1.0, "lambda_per": "sample", "smoothness": "l2",
                "mse_sigma": "estimate", "lambda_lr_factor": 1.0},
    # Hoopes et al. / voxelmorph's train_hypermorph.py
    "published": {"parametrisation": "dense", "encoding": "lambda", "loss": "hoopes", "sampling": "uniform",
                  "weight_range": [1e-5, 10.0], "lambda_max": 1.0, "lambda_per": "sample", "smoothness": "l2",
                  "mse_sigma": 0.05, "lambda_lr_factor": 1.0},
    # the GSMorph authors' code (wulalago/GSMorph, source/model_func.py): sim / 0.05^2 + lam reg,
    # one lambda per batch, their l1 gradient loss; the hypernetwork and the lambda range are not
    # in their code: ours (the default's) and HyperMorph's [0, 1]
    "gsmorph": {"parametrisation": "film", "encoding": "lambda", "loss": "gsmorph", "sampling": "uniform",
                "weight_range": [1e-5, 10.0], "lambda_max": 1.0, "lambda_per": "batch", "smoothness": "l1",
                "mse_sigma": 0.05, "lambda_lr_factor": 1.0},
}
SETTING_KEYS = tuple(VARIANTS["default"])


def settings(cfg: dict) -> dict:
    """Config `hypermorph` (checked against gsmorph/schemas/method.schema.yaml) with every
    null key replaced by its variant's value (VARIANTS); GSMorphError for a weight range
    whose ends are in the wrong order, the one check the schema cannot make."""
    hyper = cfg["hypermorph"]
    variant = hyper.get("variant", "default")
    out = {**hyper, **{k: hyper[k] if hyper.get(k) is not None else v for k, v in VARIANTS[variant].items()}}
    low, high = (float(v) for v in out["weight_range"])
    if not low < high:
        raise GSMorphError(f"config key 'hypermorph.weight_range' must be [low, high] with 0 < low < high, "
                           f"got {out['weight_range']}")
    return out


class LambdaScale:
    """The map from the hypernetwork's input t in [0, 1] to the loss's lambda, and the
    weighted-loss equivalent w of a lambda (the w of sim + w reg with the unscaled
    similarity that the loss is proportional to); s is the similarity's scale: sigma^2 for
    MSE, 1 for LNCC.

    loss hoopes, (1 - lam) sim / s + lam reg: w = lam s / (1 - lam) (infinite at 1);
    loss gsmorph, sim / s + lam reg: w = lam s.
    sampling uniform: lam = t (hoopes) or lambda_max t (gsmorph);
    sampling log-weight: w = low (high / low)^t inside (0, 1), lam the lambda of w, t = 0 and
      t = 1 the ends (hoopes: lam 0 and 1, no regularisation and the smoothness alone; gsmorph:
      w 0 and high). t uniform then gives a log-uniform w (voxelmorph issue 419).
    """

    def __init__(self, loss: str, sampling: str, scale: float, weight_range=(1e-5, 10.0), lambda_max: float = 1.0):
        self.loss, self.sampling, self.scale = loss, sampling, float(scale)
        self.low, self.high = (float(v) for v in weight_range)
        self.lambda_max = float(lambda_max)

    def lam_of_weight(self, w):
        return w / (self.scale + w) if self.loss == "hoopes" else w / self.scale

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        """(N,) hypernetwork inputs -> (N,) lambdas of the loss (float64)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.sampling == "uniform":
            return t if self.loss == "hoopes" else self.lambda_max * t
        w = self.low * (self.high / self.low) ** t
        lam = self.lam_of_weight(w)
        end = 1.0 if self.loss == "hoopes" else self.lam_of_weight(self.high)
        return torch.where(t <= 0, torch.zeros_like(lam), torch.where(t >= 1, torch.full_like(lam, end), lam))

    def weight(self, lam: float) -> float:
        lam = float(lam)
        if self.loss == "gsmorph":
            return lam * self.scale
        return math.inf if lam >= 1.0 else lam * self.scale / (1.0 - lam)

    def t_of(self, lam: float) -> float:
        """The hypernetwork input of a lambda (inverse of `lam`; clipped to [0, 1])."""
        lam = float(lam)
        if self.sampling == "uniform":
            return min(max(lam if self.loss == "hoopes" else lam / self.lambda_max, 0.0), 1.0)
        if lam <= 0:
            return 0.0
        w = self.weight(lam)
        if not math.isfinite(w):
            return 1.0
        return min(max(math.log(w / self.low) / math.log(self.high / self.low), 0.0), 1.0)


def noise_sigma(image: np.ndarray) -> float:
    """Robust estimate of the standard deviation of white noise in a 2D image (H, W), or the
    median over the slices (last axis) of a 3D one: Immerkaer (1996), the mean absolute
    response to the Laplacian-difference mask [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] times
    sqrt(pi / 2) / 6, inside the image border."""
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        return float(np.median([noise_sigma(image[..., k]) for k in range(image.shape[-1])]))
    if image.ndim != 2 or min(image.shape) < 3:
        raise ValueError(f"noise_sigma needs a 2D image of at least 3 x 3 (or a 3D stack), got {image.shape}")
    mask = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = ndimage.correlate(image, mask, mode="nearest")[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) / 6 * np.abs(response).mean())


def pair_sigma(moving: np.ndarray, fixed: np.ndarray) -> float:
    """The noise between two images after a perfect alignment: sqrt(sigma_m^2 + sigma_f^2),
    each image's noise from `noise_sigma` (independent noise adds in quadrature)."""
    return math.hypot(noise_sigma(moving), noise_sigma(fixed))


def estimate_sigma(buckets: list[dict]) -> float:
    """The median `pair_sigma` over the pairs of `load_split` buckets (moving, fixed (N, 1, *S))."""
    values = [pair_sigma(b["moving"][i, 0].cpu().numpy(), b["fixed"][i, 0].cpu().numpy())
              for b in buckets for i in range(b["moving"].shape[0])]
    if not values:
        raise GSMorphError("hypermorph.mse_sigma 'estimate': no training pairs")
    return float(np.median(values))


def network_kwargs(cfg: dict, backbone: str) -> dict:
    """HyperUNet keyword arguments from the config (written to run.json as `hyper_kwargs`):
    the voxelmorph backbone's level features (the method table limits HyperMorph to it)."""
    hyper = cfg["hypermorph"]
    vm = cfg["backbones"].get("voxelmorph", {})
    preset = vm.get("preset", "paper")
    if preset not in PRESETS:
        raise GSMorphError(f"config key 'backbones.voxelmorph.preset': unknown '{preset}' (choose from {list(PRESETS)})")
    features = hyper.get("features") or vm.get("features") or PRESETS[preset].get("features")
    if not features:
        raise GSMorphError(f"hypermorph needs level features: set 'hypermorph.features' (the voxelmorph preset "
                           f"'{preset}' is not a symmetric U-Net)")
    upsample = vm.get("upsample", "preset")
    upsample = PRESETS[preset]["upsample"] if upsample == "preset" else upsample
    chosen = settings(cfg)
    return {"features": [int(f) for f in features], "hidden": int(hyper["hidden"]), "layers": int(hyper["layers"]),
            "upsample": upsample, "parametrisation": chosen["parametrisation"], "encoding": chosen["encoding"]}


def sweep_lambdas(n: int) -> np.ndarray:
    """The coarse grid: n lambdas evenly on [0, 1]."""
    if int(n) < 2:
        raise GSMorphError(f"sweep_lambdas: n must be >= 2 (config key 'hypermorph.val_lambdas'), got {n}")
    return np.linspace(0.0, 1.0, int(n))


def fine_grid(coarse: np.ndarray, best: float, n: int) -> np.ndarray:
    """n lambdas evenly spaced strictly between the coarse neighbours of `best` (a coarse
    value; at an end of [0, 1] the interval runs from it to its one neighbour), without
    those equal to `best` (the middle one when best is inside and n is odd)."""
    if int(n) < 0:
        raise GSMorphError(f"fine_grid: n must be >= 0 (config key 'hypermorph.fine_lambdas'), got {n}")
    coarse = np.asarray(coarse, dtype=float)
    i = int(np.argmin(np.abs(coarse - best)))
    lo, hi = coarse[max(i - 1, 0)], coarse[min(i + 1, len(coarse) - 1)]
    values = np.linspace(lo, hi, int(n) + 2)[1:-1]
    return values[~np.isclose(values, best, rtol=0, atol=1e-12)]


def weighted_equivalent(lam: float, similarity: str, mse_sigma: float) -> float:
    """The weight w for which sim + w reg (unscaled similarity) is proportional to
    HyperMorph's (1 - lam) sim / s + lam reg (s = sigma^2 for MSE, 1 for LNCC):
    lam s / (1 - lam); infinite at lam = 1."""
    scale = float(mse_sigma) ** 2 if similarity == "mse" else 1.0
    lam = float(lam)
    return math.inf if lam >= 1.0 else lam * scale / (1.0 - lam)


LAMBDA_EFFECT_MIN = 0.5  # below: the lambda-dependence is reported as not learned
BROKEN_MARGIN = 0.05     # Dice at the most regularised end this far below no deformation: diverged


def lambda_effect(dice_0: float, dice_1: float, dice_identity: float) -> float:
    """The share of the registration's Dice gain at lambda 0 that lambda 1 gives up:
    (dice_0 - dice_1) / (dice_0 - dice_identity); NaN when lambda 0 gains nothing."""
    gain = dice_0 - dice_identity
    return (dice_0 - dice_1) / gain if gain > 0 else float("nan")


def sample_lambdas(n: int, endpoint_prob: float) -> torch.Tensor:
    """n training lambdas, one per sample (voxelmorph's train_hypermorph.py): each 0 or 1
    (each with probability endpoint_prob / 2), else U[0, 1]. Draws 3n numbers from torch's
    global CPU generator (saved in last.pt, so resume is exact)."""
    u, v, w = torch.rand(3, int(n))
    return torch.where(u < endpoint_prob, (v < 0.5).float(), w)


def per_sample(loss, *tensors: torch.Tensor) -> torch.Tensor:
    """(B,) values of a batch-mean loss applied to each sample alone."""
    return torch.stack([loss(*(t[i:i + 1] for t in tensors)) for i in range(tensors[0].shape[0])])


def choose(rows: list[dict]) -> dict:
    """The sweep row of highest validation Dice (the smaller lambda on a tie)."""
    finite = [r for r in rows if np.isfinite(r["val_dice"])]
    if not finite:
        raise GSMorphError("hypermorph: no finite validation Dice at any lambda; are there val pairs with labels?")
    return max(finite, key=lambda r: (r["val_dice"], -r["lam"]))


class HyperMorphTrainer(Trainer):
    """The gsmorph training loop with HyperMorph's network, loss and lambda selection."""

    extra_files = ("lambda_sweep.csv",)

    def __init__(self, prepared, backbone: str, method: str, seed: int, out, cfg: dict, lam: float | None = None,
                 data=None):
        factor = int((cfg.get("hypermorph") or {}).get("epochs_factor") or 1)
        if factor != 1:  # HyperMorph's own budget: config `hypermorph.epochs_factor` x `epochs`
            cfg = {**cfg, "epochs": factor * int(cfg["epochs"])}
        super().__init__(prepared, backbone, method, seed, out, cfg, lam=lam, data=data)
        self.hyper = settings(cfg)
        self.hyper_kwargs = network_kwargs(cfg, backbone)
        hyper = self.hyper
        self.optim = optim_settings(cfg, backbone, hyper.get("optim"), "hypermorph.optim")
        self.sweep_values = sweep_lambdas(hyper["val_lambdas"])
        self.sigma: float | None = None if hyper["mse_sigma"] == "estimate" else float(hyper["mse_sigma"])
        self.scale: LambdaScale | None = None if self.sigma is None else self.lambda_scale(self.sigma)
        self.hyper_lambda: float | None = None
        self.hyper_input: float | None = None
        self.sweep_rows: list[dict] = []
        self.identity_dice: float | None = None  # validation Dice without deformation

    def lambda_scale(self, sigma: float) -> LambdaScale:
        hyper = self.hyper
        scale = float(sigma) ** 2 if self.cfg["similarity"] == "mse" else 1.0
        return LambdaScale(hyper["loss"], hyper["sampling"], scale, hyper["weight_range"], hyper["lambda_max"])

    def initialize(self) -> None:
        if self.initialized:
            return
        from gsmorph.losses import smoothness_loss

        super().initialize()
        self.reg_loss = smoothness_loss(self.hyper["smoothness"])  # HyperMorph's own
        if self.sigma is None:  # "estimate": the noise between the training pairs' images
            self.sigma = estimate_sigma(self.train_data)
            self.scale = self.lambda_scale(self.sigma)

    # ------------------------------------------------------------------ hooks
    def check_data(self) -> None:
        if count_pairs(self.val_data) == 0:  # lambda is chosen on validation
            raise GSMorphError(f"{self.prepared / 'subjects.csv'}: hypermorph chooses lambda on the validation "
                               "split, which has no pairs")

    def build_network(self) -> torch.nn.Module:
        """RegistrationNet(HyperUNet) of the method table's `network` (its recipe in run.json)."""
        return assemble(self.spec.network, self.spatial_dims, self.hyper_kwargs, self.int_steps(self.cfg))

    def inference_inputs(self) -> list:
        """The hypernetwork input t of the chosen lambda (None until chosen, at the end)."""
        return [self.hyper_input]

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The backbone's optimiser, the lambda-dependent parameters (the MLP of lambda and
        each generated convolution's map A) at lr x `lambda_lr_factor`."""
        optimizer = super().build_optimizer()
        factor = float(self.hyper["lambda_lr_factor"])
        if factor == 1.0:
            return optimizer
        net = self.model.backbone
        dependent = net.hyper_parameters() + [c.generate.weight for c in list(net.encoder) + list(net.decoder)]
        ids = {id(p) for p in dependent}
        s, lr = self.optim, float(self.optim["lr"])
        others = [p for p in self.model.parameters() if id(p) not in ids]
        return type(optimizer)([{"params": others, "lr": lr}, {"params": dependent, "lr": lr * factor}],
                               weight_decay=float(s["weight_decay"]), amsgrad=bool(s["amsgrad"]))

    def backbone_display(self) -> str:
        from gsmorph import backbones

        kwargs = {**self.backbone_kwargs(), "features": self.hyper_kwargs["features"]}
        return backbones.variant_name(self.backbone, kwargs)

    def sample_inputs(self, n: int) -> torch.Tensor:
        """The hypernetwork inputs t of one batch of n: one per sample, or one for the whole
        batch (`lambda_per` batch: a (1,) tensor)."""
        per_batch = self.hyper["lambda_per"] == "batch"
        return sample_lambdas(1 if per_batch else n, float(self.hyper["endpoint_prob"]))

    def train_step(self, moving: torch.Tensor, fixed: torch.Tensor) -> dict:
        from gsmorph.networks import warp_image

        t = self.sample_inputs(moving.shape[0]).to(self.device)
        lam = self.scale.lam(t.cpu()).float().to(self.device)
        disp, smooth_field = self.model(torch.cat([moving, fixed], dim=1), t, with_velocity=True)
        sim = per_sample(self.sim_loss, warp_image(moving, disp), fixed) / self.scale.scale
        reg = per_sample(self.reg_loss, smooth_field)
        if self.hyper["loss"] == "hoopes":
            loss = (1.0 - lam) * sim + lam * reg
        else:  # the GSMorph authors': sim / s + lam reg
            loss = sim + lam * reg
        loss.mean().backward()
        return {"loss_sim": sim.detach().mean(), "loss_reg": reg.detach().mean()}

    def predict(self, moving: torch.Tensor, fixed: torch.Tensor, t: float | None = None) -> torch.Tensor:
        """The displacement at hypernetwork input t (default: that of the chosen lambda)."""
        t = self.hyper_input if t is None else t
        return self.model(torch.cat([moving, fixed], dim=1), float(t))

    def weighted_equivalent(self, lam: float) -> float:
        return self.scale.weight(lam)

    def sweep(self, values=None, stage: str = "coarse") -> list[dict]:
        """Validation Dice and NJD % at each hypernetwork input t of `values` (default: the
        coarse grid), with the model's current weights; `lam` is the loss's lambda of t."""
        rows = []
        for t in self.sweep_values if values is None else values:
            dice, njd = self.evaluate_split(self.val_data, lambda m, f, t=float(t): self.predict(m, f, t))
            lam = float(self.scale.lam(torch.tensor([float(t)], dtype=torch.float64))[0])
            rows.append({"stage": stage, "lam": lam, "weighted_equivalent": self.weighted_equivalent(lam),
                         "val_dice": dice, "val_njd_pct": njd, "chosen": False, "hyper_input": float(t)})
        return rows

    def validate(self) -> tuple[float, float]:
        """The best of the coarse grid (the fine grid is swept once, after training)."""
        best = choose(self.sweep())
        return best["val_dice"], best["val_njd_pct"]

    def refined_sweep(self) -> list[dict]:
        """The coarse grid, then the fine grid around its best; the chosen row marked."""
        coarse = self.sweep()
        fine = fine_grid(self.sweep_values, choose(coarse)["hyper_input"], int(self.hyper["fine_lambdas"]))
        rows = coarse + self.sweep(fine, "fine")
        choose(rows)["chosen"] = True
        return rows

    def on_train_end(self) -> None:
        import pandas as pd

        self.sweep_rows = self.refined_sweep()
        chosen = next(r for r in self.sweep_rows if r["chosen"])
        self.hyper_lambda, self.hyper_input = chosen["lam"], chosen["hyper_input"]
        write_csv(self.out / "lambda_sweep.csv", pd.DataFrame(self.sweep_rows, columns=SWEEP_COLUMNS))
        self.identity_dice, _ = self.evaluate_split(
            self.val_data, lambda m, f: torch.zeros((m.shape[0], m.ndim - 2) + tuple(m.shape[2:]), device=m.device))

    def _end_dice(self) -> dict:
        """Validation Dice at the two ends of the coarse grid, by hypernetwork input t (0, 1)."""
        return {r.get("hyper_input", r["lam"]): r["val_dice"] for r in self.sweep_rows if r["stage"] == "coarse"}

    def lambda_effect(self) -> float | None:
        """hyper_lambda_effect (see the module docstring); None before the sweep."""
        dice = self._end_dice()
        if self.identity_dice is None or 0.0 not in dice or 1.0 not in dice:
            return None
        effect = lambda_effect(dice[0.0], dice[1.0], self.identity_dice)
        return None if math.isnan(effect) else effect

    def caveat(self) -> str:
        """The convergence caveat (Trainer.caveat) joined with whether lambda was learned."""
        return "; ".join(c for c in (super().caveat(), self.lambda_caveat()) if c)

    def lambda_caveat(self) -> str:
        """What a reader must know when the hypernetwork did not learn lambda ("" if it did)."""
        dice = self._end_dice()
        if self.identity_dice is not None and 0.0 in dice and 1.0 in dice:
            if dice[0.0] <= self.identity_dice:
                return (f"it does not register: validation Dice {dice[0.0]:.1%} at lambda 0 against "
                        f"{self.identity_dice:.1%} without deformation")
            if dice[1.0] < self.identity_dice - BROKEN_MARGIN:
                return (f"it deforms worse than no deformation at its most regularised end: validation Dice "
                        f"{dice[1.0]:.1%} there against {self.identity_dice:.1%} without deformation (diverged "
                        "rather than learned lambda)")
        effect = self.lambda_effect()
        if effect is None or effect >= LAMBDA_EFFECT_MIN:
            return ""
        top = next(r["lam"] for r in self.sweep_rows if r["stage"] == "coarse" and r.get("hyper_input", r["lam"]) == 1.0)
        end = ("smoothness alone, whose optimum is no deformation" if self.hyper["loss"] == "hoopes" else
               f"its largest, weighted-loss equivalent {self.weighted_equivalent(top):.2g}")
        return (f"its lambda-dependence was not learned: validation Dice {dice[1.0]:.1%} at lambda {top:.3g} "
                f"({end}) against {dice[0.0]:.1%} at lambda 0 and "
                f"{self.identity_dice:.1%} without deformation; it registers almost alike at every lambda, so "
                "its lambda sweep chooses among near-identical outputs")

    def hyper_record(self) -> dict:
        """The chosen lambda and its weighted-loss equivalent (null while not chosen, or
        infinite at lambda 1), for run.json and summary.json."""
        equivalent = None if self.hyper_lambda is None else self.weighted_equivalent(self.hyper_lambda)
        return {
            "hyper_lambda": self.hyper_lambda,
            "hyper_input": self.hyper_input,
            "hyper_lambda_weighted_equivalent": equivalent if equivalent is not None and math.isfinite(equivalent)
            else None,
            "hyper_variant": self.hyper["variant"],
            "hyper_settings": {k: self.hyper[k] for k in SETTING_KEYS},
            "hyper_sigma": self.sigma,
            "hyper_smoothness": self.hyper["smoothness"],
            "hyper_val_dice_identity": self.identity_dice,
            "hyper_lambda_effect": self.lambda_effect(),
            # the equivalent is a weighted baseline's lambda only with the same smoothness loss
            "hyper_weighted_equivalent_comparable": self.hyper["smoothness"] == self.cfg["smoothness"],
        }

    def run_info(self) -> dict:
        info = super().run_info()
        info.update({"hyper_kwargs": self.hyper_kwargs, "lam": self.hyper_lambda,
                     "smoothness": self.hyper["smoothness"], **self.hyper_record()})
        return info

    def summary(self) -> dict:
        out = super().summary()
        out.update({"lam": self.hyper_lambda, **self.hyper_record()})
        return out

    # ------------------------------------------ inference of run folders without run.json `network`
    @classmethod
    def build_from_info(cls, info: dict) -> torch.nn.Module:
        kwargs = info.get("hyper_kwargs")
        if not kwargs:
            raise GSMorphError("no 'hyper_kwargs'; not a finished hypermorph run")
        return RegistrationNet(HyperUNet(int(info["spatial_dims"]), **kwargs), cls.int_steps(info))

    @classmethod
    def predictor(cls, model: torch.nn.Module, info: dict):
        t = info.get("hyper_input", info.get("hyper_lambda"))  # runs before hyper_input: t = lambda
        if t is None:
            raise GSMorphError("run.json has no 'hyper_lambda'; did training finish?")
        return lambda moving, fixed: model(torch.cat([moving, fixed], dim=1), float(t))
