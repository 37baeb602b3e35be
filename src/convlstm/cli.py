"""The ``convlstm`` command line: train, evaluate, predict, export, demo, list-models, bench.

Examples::

    convlstm train moving_digits                      # a bundled config, by name
    convlstm train my.yaml --model.hidden_channels "[32, 32]" --trainer.max_epochs 5
    convlstm train --resume runs/encoder-forecaster-moving_digits-20261122-101500
    convlstm evaluate RUN_DIR --data other_data.yaml
    convlstm predict RUN_DIR clip.npy --output predictions/
    convlstm export RUN_DIR --format onnx
    convlstm diagnose RUN_DIR --object-scale 24
    convlstm demo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .training.config import ConfigError, parse_override

CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config(name: str) -> Path:
    """A config path, or the name of a bundled config (``moving_digits``)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if bundled.is_file():
        return bundled
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"config {name!r} not found: not a file, nor one of {names}")


def _overrides(extra: list[str]) -> list:
    if len(extra) % 2:
        raise ConfigError(f"overrides come in pairs --section.key VALUE, got {extra}")
    pairs = []
    for key, value in zip(extra[::2], extra[1::2]):
        if not key.startswith("--"):
            raise ConfigError(f"expected an override --section.key, got {key!r}")
        pairs.append(parse_override(key, value))
    return pairs


def cmd_train(args, extra: list[str]) -> int:
    from .training import run as runs
    from .training.config import load_config

    if args.resume:
        if args.config or extra:
            raise ConfigError("--resume takes the run's own config: give no CONFIG or overrides")
        run = runs.resume(args.resume)
    else:
        if not args.config:
            raise ConfigError("give a CONFIG (path or bundled name) or --resume RUN_DIR")
        config = load_config(resolve_config(args.config), _overrides(extra))
        run = runs.train(config, run_dir=args.run_dir)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:  # other DDP ranks: rank 0 reports
        return 0
    print(json.dumps({"run_dir": str(run.run_dir), "metrics": _headline(run.metrics)}, indent=2))
    return 0


def _headline(metrics: dict) -> dict:
    keys = ("accuracy", "balanced_accuracy", "roc_auc", "f1", "mse", "mae", "ssim", "psnr")
    return {k: metrics[k] for k in keys if k in metrics} | {
        k: v for k, v in metrics.items() if k.startswith(("csi@", "pod@", "far@"))
    }


def cmd_evaluate(args, extra: list[str]) -> int:
    from .training.run import Run, jsonable

    run = Run.open(args.run_dir)
    metrics = run.evaluate(split=args.split, data=_data_section(args.data))
    print(json.dumps(jsonable(metrics), indent=2))
    return 0


def _data_section(path: str | None) -> dict | None:
    """The ``data`` section of a YAML file given with ``--data`` (or the whole file)."""
    if not path:
        return None
    from .training.run import load_yaml

    raw = load_yaml(Path(path))
    return raw.get("data", raw)


def cmd_predict(args, extra: list[str]) -> int:
    from .training.predict import read_input, write_predictions
    from .training.run import Run

    run = Run.open(args.run_dir)
    sample_shape = _sample_shape(run)
    x = read_input(args.input, sample_shape, variable=args.variable)
    predictions = run.predict(x)
    output = Path(args.output or Path(args.run_dir) / "predictions")
    written = write_predictions(output, x, predictions, run.config.task)
    print(json.dumps(written, indent=2))
    return 0


def _sample_shape(run) -> tuple[int, ...]:
    from .training.evaluation import first_test_clip

    return tuple(first_test_clip(run).shape)


def cmd_export(args, extra: list[str]) -> int:
    from .training.export import export_run

    path = export_run(args.run_dir, args.format, args.output)
    print(path)
    return 0


def cmd_diagnose(args, extra: list[str]) -> int:
    from .diagnostics import run_diagnostics, write_diagnostics
    from .training.evaluation import class_names, datamodule_for
    from .training.objectives import build_objective
    from .training.run import Run

    if args.max_batches < 1:
        raise ValueError(f"--max-batches must be >= 1, got {args.max_batches}")
    if args.object_scale is not None and args.object_scale <= 0:
        raise ValueError(f"--object-scale must be a positive number of pixels, got "
                         f"{args.object_scale}")  # fmt: skip
    run = Run.open(args.run_dir)
    datamodule = datamodule_for(run, _data_section(args.data))
    loader = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}[args.split]()
    model = run.model
    num_classes = int(getattr(model, "num_classes", 1))
    loss = {"name": run.config.loss.name, **run.config.loss.options}
    loss_fn = build_objective(run.config.task, loss, num_classes=num_classes).loss
    result = run_diagnostics(
        model, loader, loss_fn=loss_fn, object_scale=args.object_scale,
        max_batches=args.max_batches, class_names=class_names(datamodule.datasets["train"]),
    )  # fmt: skip
    json_path, html_path = write_diagnostics(result, Path(args.run_dir) / "diagnostics")
    report = {"json": str(json_path), "html": str(html_path), "summary": result["summary"]}
    print(json.dumps(report, indent=2))
    return 0


def cmd_demo(args, extra: list[str]) -> int:
    from .demo import main as demo_main

    demo_main(quick=args.quick, root=args.root)
    return 0


def cmd_list_models(args, extra: list[str]) -> int:
    from .models import list_models

    print("\n".join(list_models()))
    return 0


def cmd_bench(args, extra: list[str]) -> int:
    import subprocess

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    if not script.is_file():
        raise FileNotFoundError(
            f"{script} not found: the benchmarks live in the source checkout (make bench)"
        )
    return subprocess.call([sys.executable, str(script), *extra])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlstm", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str, epilog: str = ""):
        p = sub.add_parser(
            name, help=help, description=help, epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.set_defaults(func=func)
        return p

    p = add("train", cmd_train, "Train a model from a YAML config.",
            "examples:\n  convlstm train moving_digits --trainer.max_epochs 3\n"
            "  convlstm train --resume runs/<run>\n\nAny --section.key VALUE overrides the config"
            " (values are YAML: 3, 0.1, [8, 16], null).")  # fmt: skip
    p.add_argument("config", nargs="?", help="YAML path or bundled config name")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its folder")
    p.add_argument("--run-dir", help="the run folder (default runs/<name>-<time>)")

    p = add("evaluate", cmd_evaluate, "Evaluate a trained run.",
            "example:\n  convlstm evaluate runs/<run> --split test --data other.yaml")  # fmt: skip
    p.add_argument("run_dir")
    p.add_argument("--data", help="YAML with a data section to evaluate on instead")
    p.add_argument("--split", default="test", choices=["val", "test"])

    p = add("predict", cmd_predict, "Predict on a file: .npy, a video or NetCDF.",
            "example:\n  convlstm predict runs/<run> clip.npy --output preds/")  # fmt: skip
    p.add_argument("run_dir")
    p.add_argument("input")
    p.add_argument("--output", help="folder for predictions.npy (and forecast.gif)")
    p.add_argument("--variable", help="NetCDF variable name")

    p = add("export", cmd_export, "Export a trained model to ONNX or TorchScript.",
            "example:\n  convlstm export runs/<run> --format onnx")  # fmt: skip
    p.add_argument("run_dir")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--output", help="output file (default RUN_DIR/model.onnx or model.pt)")

    p = add("diagnose", cmd_diagnose, "Diagnose a trained run: class similarity per layer, "
            "gradient flow through time, receptive field, gate statistics, attention maps.",
            "example:\n  convlstm diagnose runs/<run> --split val --object-scale 24\n\n"
            "Writes RUN_DIR/diagnostics/diagnostics.json (every number) and diagnostics.html "
            "(plots).")  # fmt: skip
    p.add_argument("run_dir")
    p.add_argument("--data", help="YAML with a data section to diagnose on instead")
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--object-scale", type=float, metavar="PIXELS",
                   help="size of the objects that matter, for receptive-field warnings")
    p.add_argument("--max-batches", type=int, default=8, metavar="N",
                   help="batches per diagnostic (default 8)")  # fmt: skip

    p = add("demo", cmd_demo, "Train a forecaster on MovingDigits and a classifier on "
            "SimilarMotions, and write their reports.", "example:\n  convlstm demo")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument("--root", default="runs", help="where the demo run folders go")

    add("list-models", cmd_list_models, "List the registered model names.")
    add("bench", cmd_bench, "Run the speed/memory benchmarks (arguments go to benchmarks/run.py).")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "bench"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from .runtime import configure_malloc
    from .training.errors import NonFiniteLossError

    configure_malloc()
    try:
        return args.func(args, extra)
    except (ConfigError, FileNotFoundError, ValueError, NonFiniteLossError) as error:
        print(f"convlstm {args.command}: error: {error}", file=sys.stderr)
        return 3 if isinstance(error, NonFiniteLossError) else 2


if __name__ == "__main__":
    sys.exit(main())
