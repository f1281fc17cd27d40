"""What the workflow says when it plans a run (dry runs too), before any job: which datasets
are phantoms because no download root is set, and that the GPU jobs will train on the CPU
when this machine shows no CUDA GPU and the jobs run here."""
from __future__ import annotations

from gsmorph import datasets

DATASET_NAMES = datasets.names()


def phantom_notices(config: dict) -> list[str]:
    """One line per dataset without `<dataset>_root`: it is the synthetic phantom."""
    epochs = (config.get("method") or {}).get("epochs")
    scale = f" ({epochs} training epochs)" if epochs else ""
    return [f"{dataset}: phantom (no {dataset}_root): synthetic {DATASET_NAMES.get(dataset, dataset)}-format data, "
            f"not the real dataset{scale}; --config {dataset}_root=/path/to/download for the real one"
            for dataset in config["datasets"] if not config.get(f"{dataset}_root")]


def gpu_notice(n_runs: int, gpus: list[str], local: bool) -> list[str]:
    """A warning when the jobs of `n_runs` learned runs, which ask for a GPU, run on this
    machine (`local`) and it shows none (`gpus`: gsmorph.gpu_slots.visible_gpus()); none
    for a cluster executor, whose nodes have their own GPUs."""
    if n_runs and local and not gpus:
        return [f"no CUDA GPU visible here (no NVIDIA driver lists one, or CUDA_VISIBLE_DEVICES is empty): "
                f"the train and tune jobs of the {n_runs} learned runs will train on the CPU when run on this machine"]
    return []
