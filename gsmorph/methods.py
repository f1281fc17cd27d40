"""The method table: every registration method of the benchmark, declared once.

CLI choices, the workflow's method lists and rules, the config schema's allowed values,
and the report's names, order, colours and markers all derive from METHODS; no other
module spells a method id. A method is made in one of three ways (its `family`):

* ``classical``: a registrar ``f(moving, fixed, spacing, params, seed) -> disp`` per pair
  (`gsmorph register`); `params` is the config section named in `sections`, if any.
* ``trained``: a trainer class (gsmorph.training.Trainer or a subclass), `gsmorph train`.
  A gradient-surgery method names its `surgery` mode; a fixed-lambda weighted loss its
  `lam_key` in config `lambdas`; a trainer method with neither takes `--lam`.
* ``tuned``: a tuner ``f(prepared, backbone, trials, storage, study, seed, out, cfg)``
  (`gsmorph tune`) searching the lambda of the trained method `tunes`.

`maker` names the trainer, registrar or tuner as "module:attribute" and is imported only
when used (gsmorph.plugins.resolve), so this table, and gsmorph as a whole, never imports baselines/.

Adding a method: add a Method here (or, from your own package, call `register` in a
module named in the environment variable GSMORPH_PLUGINS; see gsmorph/plugins.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gsmorph import plugins
from gsmorph.errors import GSMorphError

FAMILIES = ("classical", "trained", "tuned")
TRAINER = "gsmorph.training:Trainer"


@dataclass(frozen=True)
class Method:
    """One registration method (see the module docstring)."""

    id: str
    family: str
    display: str                 # table and figure name; "{backbone}" becomes the backbone's name
    colour: str                  # one matplotlib colour in every figure
    marker: str                  # one matplotlib marker in every figure
    maker: str                   # "module:attribute" of its trainer, registrar or tuner
    surgery: str | None = None   # trained: gradient-surgery mode (gsmorph.surgery.MODES)
    lam_key: str | None = None   # trained: key of config `lambdas` holding its fixed lambda
    tunes: str | None = None     # tuned: the trained method whose lambda is searched
    backbones: tuple[str, ...] | None = None  # learned: backbones it exists for (None: all)
    sections: tuple[str, ...] = ()            # config sections it reads
    in_tables: bool = True       # part of Table 1 and the workflow (False: by hand only)
    parallel: bool = True        # classical: pairs in a pool of processes (False: too cheap to pay one)
    general: bool = False        # a general gradient-aggregation method (Table 2 beside GSMorph, not Table 1)
    network: str | None = None   # trained: "module:attribute" of its own backbone network (None: the backbone table's)

    @property
    def learned(self) -> bool:
        return self.family != "classical"

    @property
    def takes_lam(self) -> bool:
        """A trained weighted loss whose lambda is given on the command line (--lam)."""
        return self.family == "trained" and self.maker == TRAINER and not self.surgery and not self.lam_key

    def name(self, backbone_display: str = "") -> str:
        """The display name, e.g. 'VoxelMorph-s' for weighted-s on VoxelMorph."""
        return self.display.format(backbone=backbone_display)

    def supports(self, backbone: str) -> bool:
        return self.backbones is None or backbone in self.backbones


REFERENCE = "gsmorph"  # the method every other one is tested against

METHODS: list[Method] = [
    Method("initial", "classical", "Initial", "#7f7f7f", "o", "baselines.identity:identity", parallel=False),
    Method("demons", "classical", "Demons", "#8c564b", "v", "baselines.classical:demons", sections=("demons",)),
    Method("syn", "classical", "SyN", "#bcbd22", "^", "baselines.classical:syn", sections=("syn",)),
    Method("weighted-s", "trained", "{backbone}-s", "#9ecae1", "s", TRAINER, lam_key="s"),
    Method("weighted-m", "trained", "{backbone}-m", "#3182bd", "s", TRAINER, lam_key="m"),
    Method("weighted-l", "trained", "{backbone}-l", "#08519c", "s", TRAINER, lam_key="l"),
    Method("weighted-tuned", "tuned", "Tuned", "#9467bd", "D", "baselines.tuning:tune", tunes="weighted",
           sections=("tune",)),
    Method("hypermorph", "trained", "HyperMorph", "#2ca02c", "P", "baselines.hypermorph:HyperMorphTrainer",
           backbones=("voxelmorph",), sections=("hypermorph",), network="baselines.hypernet:HyperUNet"),
    Method("gs-agr", "trained", "GS-Agr", "#e377c2", "X", TRAINER, surgery="agr"),
    Method("gs-pcgrad", "trained", "GS-PCGrad", "#ff7f0e", "h", TRAINER, surgery="network"),
    Method("gsmorph", "trained", "GSMorph", "#d62728", "*", TRAINER, surgery="layerwise"),
    Method("weighted", "trained", "Weighted", "#c5b0d5", "s", TRAINER, in_tables=False),
]

# The general gradient-aggregation methods (gsmorph/aggregators.py): each rule per parameter
# tensor (GSMorph's granularity) and on the whole network ("-network"); not in config.yaml's
# default run, but in workflow/configs/aggregators.yaml. Colours: matplotlib's tab20b, a
# darker shade per tensor, a lighter one for the network.
_AGGREGATORS = (("upgrad", "UPGrad"), ("mgda", "MGDA"), ("cagrad", "CAGrad"), ("nashmtl", "Nash-MTL"),
                ("alignedmtl", "Aligned-MTL"), ("imtlg", "IMTL-G"), ("pcgrad", "PCGrad"), ("gradvac", "GradVac"),
                ("dualproj", "DualProj"), ("config", "ConFIG"))
_TAB20B = ("#393b79", "#6b6ecf", "#637939", "#b5cf6b", "#8c6d31", "#e7ba52", "#843c39", "#d6616b", "#7b4173",
           "#ce6dbd", "#5254a3", "#9c9ede", "#8ca252", "#cedb9c", "#bd9e39", "#e7cb94", "#ad494a", "#e7969c",
           "#a55194", "#de9ed6")
_SHAPES = ("<", ">", "8", "p", "H", "d", "v", "^", "h", "o")
for _i, (_rule, _name) in enumerate(_AGGREGATORS):
    METHODS.append(Method(_rule, "trained", _name, _TAB20B[2 * _i], _SHAPES[_i], TRAINER, surgery=_rule,
                          general=True))
    METHODS.append(Method(f"{_rule}-network", "trained", f"{_name}-network", _TAB20B[2 * _i + 1],
                          _SHAPES[(_i + 5) % 10], TRAINER, surgery=f"{_rule}-network", general=True))
# The lambda sweep of the weighted loss (config lambdas.sweep1..6, smallest to largest;
# half-decades from 1e-4 to 1 with s, m, l): fixed-lambda methods like weighted-s/-m/-l,
# in no default method list (workflow/configs/study.yaml runs them)
SWEEP_COLOURS = ("#c7e9c0", "#a1d99b", "#74c476", "#41ab5d", "#238b45", "#005a32")
METHODS += [Method(f"weighted-sweep{i}", "trained", f"{{backbone}}-sweep{i}", colour, "d", TRAINER,
                   lam_key=f"sweep{i}") for i, colour in enumerate(SWEEP_COLOURS, start=1)]


def register(method: Method) -> Method:
    """Add a method to the table (at the end of the table order); its id must be new."""
    if method.family not in FAMILIES:
        raise ValueError(f"method '{method.id}': family must be one of {FAMILIES}, got '{method.family}'")
    if any(m.id == method.id for m in METHODS):
        raise ValueError(f"method '{method.id}' is already in the table")
    if ":" not in method.maker:
        raise ValueError(f"method '{method.id}': maker must be 'module:attribute', got '{method.maker}'")
    METHODS.append(method)
    return method


def get(method_id: str) -> Method:
    """The method `method_id`; GSMorphError listing the known ids otherwise."""
    for method in METHODS:
        if method.id == method_id:
            return method
    raise GSMorphError(f"unknown method '{method_id}'; known: {', '.join(m.id for m in METHODS)}")


def find(method_id: str) -> Method | None:
    return next((m for m in METHODS if m.id == method_id), None)


def ids(family: str | None = None, in_tables: bool | None = True) -> list[str]:
    """Method ids in table order, optionally of one family; by default those of Table 1."""
    return [m.id for m in METHODS
            if (family is None or m.family == family) and (in_tables is None or m.in_tables == in_tables)]


def rank(method_id: str) -> tuple[int, str]:
    """Sort key: the table order; unknown ids after the known ones, alphabetically."""
    order = [m.id for m in METHODS]
    return (order.index(method_id), "") if method_id in order else (len(order), method_id)


def general_ids() -> list[str]:
    """The general gradient-aggregation methods (Table 2, with GSMorph)."""
    return [m.id for m in METHODS if m.general]


def surgery_ids() -> list[str]:
    """Methods trained with gradient surgery (they write conflicts.csv)."""
    return [m.id for m in METHODS if m.surgery]


def fixed_lambdas() -> dict[str, str]:
    """{method: key of config `lambdas`} of the fixed-lambda weighted losses."""
    return {m.id: m.lam_key for m in METHODS if m.lam_key}


def own_lambda_ids() -> list[str]:
    """Trained methods that choose their lambda themselves (e.g. HyperMorph's sweep)."""
    return [m.id for m in METHODS if m.family == "trained" and not (m.surgery or m.lam_key or m.takes_lam)]


def is_weighted_loss(method_id: str) -> bool:
    """A weighted-loss method: a fixed or given lambda, the tuned one, or a sweep id
    'weighted-...' not in the method table."""
    spec = find(method_id)
    if spec is None:
        return method_id.startswith("weighted")
    return bool(spec.lam_key or spec.takes_lam or spec.tunes == "weighted"
                or (method_id.startswith("weighted") and not spec.surgery))


def maker_of(method_id: str) -> Any:
    """The trainer class, registrar or tuner of a method, imported."""
    return plugins.resolve(get(method_id).maker)


plugins.load()  # after the table exists: a plugin may call register
