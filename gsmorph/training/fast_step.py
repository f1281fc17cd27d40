"""The fast-step options of a training step: chosen from the config, checked against the
device, and applied to a network just built.

Method config keys (gsmorph/schemas/method.schema.yaml), all CUDA only:

* ``precision``: ``fp32`` (PyTorch's defaults, as always: float32 throughout; cuDNN's own
  default lets convolutions use TF32 on Ampere and newer, matrix products stay float32),
  ``tf32`` (TF32 for matrix products too: ``torch.set_float32_matmul_precision("high")``),
  ``bf16`` (``tf32`` plus the network's forward pass of a training step under bfloat16
  autocast; warping, losses, gradients, the gradient surgery and the optimiser stay
  float32, and validation runs in float32 as inference does);
* ``channels_last``: network weights and the training step's input in channels-last
  memory order (the layout tensor-core convolutions want);
* ``compile``: ``torch.compile`` of the network (``nn.Module.compile``: the state dict and
  checkpoints keep their keys);
* ``surgery_cuda_graph``: the gradient surgery's step captured in a CUDA graph
  (gsmorph.surgery.GradientSurgery(cuda_graph=True)); methods without surgery ignore it.

On a CPU every one of them is refused with a GSMorphError naming the key and the device:
the CPU path stays the float32 eager one whose results are bitwise reproducible.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import asdict, dataclass

import torch

from gsmorph.errors import GSMorphError

PRECISIONS = ("fp32", "tf32", "bf16")
STEP_KEYS = ("precision", "channels_last", "compile", "surgery_cuda_graph")
MIN_CAPABILITY = {"tf32": (8, 0), "bf16": (8, 0)}  # Ampere: TF32 and bfloat16 tensor cores
COMPILE_CAPABILITY = (7, 0)  # Triton, which torch.compile generates CUDA kernels with


@dataclass(frozen=True)
class StepOptions:
    """How a training step runs (see the module docstring); the defaults are today's
    float32 eager step."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    surgery_cuda_graph: bool = False

    @property
    def default(self) -> bool:
        return self == StepOptions()

    @property
    def autocast(self) -> bool:
        return self.precision == "bf16"

    def as_dict(self) -> dict:
        return asdict(self)


def step_options(cfg: dict, device, capability: tuple[int, int] | None = None,
                 has_triton: bool | None = None, name: str | None = None) -> StepOptions:
    """The fast-step options of a method config, checked against `device`.

    GSMorphError naming the key, its value and the device for an option the device lacks:
    any non-default option on a CPU; tf32/bf16 on a GPU of compute capability below 8.0;
    compile without Triton or below 7.0. capability, has_triton and name describe a CUDA
    device (read from it when None; given by tests to stand in for a GPU)."""
    options = StepOptions(precision=str(cfg.get("precision", "fp32")),
                          channels_last=bool(cfg.get("channels_last", False)),
                          compile=bool(cfg.get("compile", False)),
                          surgery_cuda_graph=bool(cfg.get("surgery_cuda_graph", False)))
    if options.precision not in PRECISIONS:
        raise GSMorphError(f"config key 'precision': '{options.precision}' is not one of {', '.join(PRECISIONS)}")
    asked = [(k, v) for k, v in options.as_dict().items() if v != getattr(StepOptions(), k)]
    if not asked:
        return options
    if device.type != "cuda":
        key, value = asked[0]
        shown = f"'{value}'" if isinstance(value, str) else str(value).lower()
        others = f" (also set: {', '.join(k for k, _ in asked[1:])})" if asked[1:] else ""
        raise GSMorphError(f"config key '{key}': {shown} needs a CUDA GPU, and this run's device is "
                           f"{device.type}{others}; on a CPU leave precision fp32 and channels_last, compile, "
                           "surgery_cuda_graph false (the float32 eager step, bitwise reproducible)")
    if capability is None or name is None:
        capability = capability or torch.cuda.get_device_capability(device)
        name = name or torch.cuda.get_device_name(device)
    capability = tuple(capability)
    needed = MIN_CAPABILITY.get(options.precision)
    if needed and capability < needed:
        raise GSMorphError(f"config key 'precision': '{options.precision}' needs a GPU of compute capability "
                           f"{needed[0]}.{needed[1]} or newer (Ampere, Hopper); {device} ({name}) has "
                           f"{capability[0]}.{capability[1]}: use precision fp32")
    if options.compile:
        if has_triton is None:
            try:
                from torch.utils._triton import has_triton as _has_triton

                has_triton = bool(_has_triton())
            except ImportError:
                has_triton = False
        if not has_triton or capability < COMPILE_CAPABILITY:
            raise GSMorphError(f"config key 'compile': true needs Triton and a GPU of compute capability "
                               f"{COMPILE_CAPABILITY[0]}.{COMPILE_CAPABILITY[1]} or newer; {device} ({name}) has "
                               f"{capability[0]}.{capability[1]}" + ("" if has_triton else " and Triton is missing"))
    return options


def apply_precision(options: StepOptions, device) -> None:
    """Set the process-wide float32 precision of matrix products and convolutions for
    `options` on a CUDA device (fp32: PyTorch's defaults, set explicitly so that a run
    after a tf32 one in the same process is fp32 again); nothing on a CPU."""
    if device.type != "cuda":
        return
    fast = options.precision in ("tf32", "bf16")
    torch.set_float32_matmul_precision("high" if fast else "highest")
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default, also for fp32


def memory_format(spatial_dims: int):
    """torch.channels_last (2D) or torch.channels_last_3d (3D)."""
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def _floats(out):
    """`out` (a tensor or a tuple/list of them) with floating tensors as float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_floats(o) for o in out)
    return out


def fast_forward(model: torch.nn.Module, device_type: str, autocast: bool, fmt) -> None:
    """Wrap `model.forward` in place (its state dict is unchanged): the input in memory
    format `fmt` (None: as given); and, for a training step (train mode, gradients on) with
    `autocast`, the forward under bfloat16 autocast with its outputs returned as float32,
    so that warping, losses and every gradient the surgery combines are float32.
    Validation and inference (eval mode or no gradients) run in float32."""
    forward = model.forward

    def wrapped(x, *args, **kwargs):
        if fmt is not None and x.dim() in (4, 5):
            x = x.contiguous(memory_format=fmt)
        if not (autocast and model.training and torch.is_grad_enabled()):
            return forward(x, *args, **kwargs)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            out = forward(x, *args, **kwargs)
        return _floats(out)

    model.forward = wrapped


def match_parameter_layout(model: torch.nn.Module) -> None:
    """Give every .grad its parameter's strides (channels-last weights: the surgery writes
    its update into contiguous buffers), so the optimiser works on equal layouts."""
    for p in model.parameters():
        g = p.grad
        if g is not None and g.stride() != p.stride():
            p.grad = torch.empty_like(p).copy_(g)


def apply_step_options(model: torch.nn.Module, options: StepOptions, device, spatial_dims: int,
                       compiles: bool, compile_kwargs: dict, who: str) -> StepOptions:
    """The options on a network just built, before its optimiser; returns those in effect.

    The float32 matmul precision (process-wide), channels-last weights, the bf16 forward of
    training steps, torch.compile. With the defaults only PyTorch's own precision defaults
    are set again on CUDA (an earlier tf32 run in the same process, e.g. a benchmark's, must
    not leak into an fp32 one); nothing at all on a CPU. compiles: whether torch.compile
    pays off for the trainer `who` (if not, compile is dropped, said on stderr)."""
    apply_precision(options, device)
    if options.default:
        return options
    fmt = memory_format(spatial_dims) if options.channels_last else None
    if fmt is not None:
        model.to(memory_format=fmt)
    if fmt is not None or options.autocast:
        fast_forward(model, device.type, options.autocast, fmt)
    if options.compile and not compiles:
        print(f"{who}: compile is not applied: its train_step calls the network with Python "
              "numbers (a recompilation for every new value); run.json records compile: false",
              file=sys.stderr, flush=True)
        return dataclasses.replace(options, compile=False)
    if options.compile:
        import torch._dynamo

        torch._dynamo.reset()  # a fresh cache for each run (tuning trials share a process)
        model.compile(**compile_kwargs)
    return options
