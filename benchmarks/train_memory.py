"""Peak memory (RSS) and step time of GSMorph training: 128 x 128 pairs, batch 32, the
paper's VoxelMorph (features 16, 32, 64, 128, 256), on CPU.

Writes a phantom (gsmorph synth + prepare --size 128) to a temporary folder, trains one
run with the Trainer (all training pairs in memory as tensors) and prints the peak
resident set size of this process (ru_maxrss) and the median step time.

    python benchmarks/train_memory.py [--method gsmorph] [--subjects 10] [--epochs 1] [--threads 2]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="gsmorph", choices=("gsmorph", "gs-pcgrad", "gs-agr", "weighted"))
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch

    from gsmorph.cli import main as cli
    from gsmorph.config import load_config
    from gsmorph.training import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        assert cli(["synth", "--format", "acdc", "--out", str(tmp / "raw"), "--subjects", str(args.subjects),
                    "--seed", "0"]) == 0
        assert cli(["prepare", "--dataset", "acdc", "--raw", str(tmp / "raw"), "--out", str(tmp / "prep"),
                    "--size", "128", "--seed", "0"]) == 0
        before = peak_rss_mib()
        cfg = load_config(None, {"epochs": args.epochs, "batch_size": args.batch_size, "val_every": args.epochs,
                                 "device": "cpu", "num_threads": args.threads})
        step_times = []

        class TimedTrainer(Trainer):
            """The Trainer with its train_step hook timed (forward + surgery/backward + update);
            it trains the method as the Trainer it times (the method table's trainer)."""

            @classmethod
            def name(cls) -> str:
                return Trainer.name()

            def train_step(self, moving, fixed):
                start = time.perf_counter()
                out = super().train_step(moving, fixed)
                step_times.append((time.perf_counter() - start, moving.shape[0]))
                return out

        trainer = TimedTrainer(tmp / "prep", "voxelmorph", args.method, 0, tmp / "run", cfg,
                               lam=0.01 if args.method == "weighted" else None)
        summary = trainer.fit()
        n_train = sum(b["moving"].shape[0] for b in trainer.train_data)
        full = [t for t, b in step_times if b == args.batch_size] or [t for t, _ in step_times]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, method {args.method}, "
              f"{n_train} training pairs of 128 x 128, batch {args.batch_size}, {len(step_times)} steps")
        print(f"parameters: {sum(p.numel() for p in trainer.model.parameters()):,}")
        print(f"peak RSS before training (python + torch + data prep): {before:.0f} MiB")
        print(f"peak RSS of the whole run: {peak_rss_mib():.0f} MiB")
        print(f"median step (forward + surgery/backward): {statistics.median(full):.3f} s")
        print(f"wall {summary['wall_s']:.1f} s, val Dice {summary['best_val_dice']:.3f}")


if __name__ == "__main__":
    main()
