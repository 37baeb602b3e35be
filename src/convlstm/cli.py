"""The ``convlstm`` command line: train, evaluate, predict, export, diagnose, import, demo,
list-models. (The benchmarks run from a source checkout: ``make bench``.)

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

from .training.config import ConfigError, parse_override, resolve_config


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate ``--section.key VALUE`` and ``--section.key=VALUE`` overrides (a dot in the
    option's name) from the other arguments, wherever they stand."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        item = argv[i]
        name = item.split("=", 1)[0]
        if item.startswith("--") and "." in name and not Path(item).exists():
            if "=" in item:
                overrides += [name, item.split("=", 1)[1]]
            elif i + 1 < len(argv):
                overrides += [item, argv[i + 1]]
                i += 1
            else:
                raise ConfigError(f"override {item} has no value; expected {item} VALUE")
        else:
            rest.append(item)
        i += 1
    return rest, overrides


def _overrides(extra: list[str]) -> list:
    if len(extra) % 2:
        raise ConfigError(f"overrides come in pairs --section.key VALUE, got {extra}")
    pairs = []
    for key, value in zip(extra[::2], extra[1::2]):
        if not key.startswith("--"):
            raise ConfigError(f"expected an override --section.key VALUE, got {key!r}")
        pairs.append(parse_override(key, value))
    return pairs


def cmd_train(args, extra: list[str]) -> int:
    from .training.config import load_config

    if args.resume:
        if args.config or extra or args.overwrite:
            raise ConfigError("--resume takes the run's own config: give no CONFIG, overrides "
                              "or --overwrite")  # fmt: skip
    else:
        if not args.config:
            raise ConfigError("give a CONFIG (path or bundled name) or --resume RUN_DIR")
        config = load_config(resolve_config(args.config), _overrides(extra))
        if args.print_config:
            from .training.config import config_yaml

            print(config_yaml(config), end="")
            return 0
    # The run module imports Lightning (seconds): a config error is reported before.
    from .training import run as runs

    if args.resume:
        run = runs.resume(args.resume)
    else:
        run = runs.train(config, run_dir=args.run_dir, overwrite=args.overwrite)
    from lightning.pytorch.utilities import rank_zero_only

    from .training.evaluation import headline_metrics, metric_lines

    if rank_zero_only.rank != 0:  # other DDP ranks: rank 0 reports
        return 0
    report = run.run_dir / "report.html"
    summary = {"run_dir": str(run.run_dir), "finished_before": run.finished_before,
               "metrics": headline_metrics(run.metrics),
               "report": str(report) if report.is_file() else None}  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    if run.finished_before:
        print(f"{run.run_dir} is finished already (metrics.json written); nothing to resume.")
    else:
        print(f"Trained {run.config.model.name} on {run.config.data.name} "
              f"({run.config.task}): {run.run_dir}")  # fmt: skip
    for line in metric_lines(run.metrics):
        print("  " + line)
    if summary["report"]:
        print(f"  report: {summary['report']}")
    return 0


def cmd_evaluate(args, extra: list[str]) -> int:
    from .training.evaluation import metric_lines
    from .training.run import Run, jsonable

    run = Run.open(args.run_dir)
    model = run.checkpoint_model(args.checkpoint) if args.checkpoint else None
    metrics = run.evaluate(split=args.split, data=_data_section(args.data), model=model)
    if args.json:
        print(json.dumps(jsonable(metrics), indent=2))
        return 0
    print(f"{run.run_dir} on the {args.split} split"
          f"{' of ' + args.data if args.data else ''}:")  # fmt: skip
    for line in metric_lines(metrics):
        print("  " + line)
    return 0


def _data_section(path: str | None) -> dict | None:
    """The ``data`` section of a YAML file given with ``--data`` (or the whole file)."""
    if not path:
        return None
    from .training.run import load_yaml

    raw = load_yaml(Path(path))
    return raw.get("data", raw)


def cmd_predict(args, extra: list[str]) -> int:
    from .pretrained import nowcaster_of
    from .training.predict import describe, predict_file, write_predictions
    from .training.run import Run

    nowcaster = nowcaster_of(args.run_dir)
    if nowcaster is not None:
        return _nowcast(args, nowcaster)
    run = Run.open(args.run_dir)
    windows, predictions, clips = predict_file(
        run, args.input, stride=args.stride, variable=args.variable, time_dim=args.time_dim,
        logits=args.logits,
    )  # fmt: skip
    output = Path(args.output or Path(args.run_dir) / "predictions")
    written = write_predictions(output, windows, clips, predictions, run.spec, logits=args.logits)
    if args.json:
        rows = [{"source": w.source, "sequence": w.sequence, "start": w.start,
                 "stop": w.stop, "prediction": p.tolist()}
                for w, p in zip(windows, predictions)]  # fmt: skip
        print(json.dumps({**written, "windows": rows}, indent=2))
        return 0
    if args.stride is None and windows and windows[0].start > 0:
        print(f"{Path(args.input).name}: {windows[0].stop} frames; predicting on the last "
              f"window of {windows[0].stop - windows[0].start} (--stride N for every window)")
    for line in describe(windows, predictions, run.spec, logits=args.logits):
        print(line)
    print("written: " + ", ".join(written.values()))
    return 0


def _nowcast(args, nowcaster) -> int:
    """``predict`` with a nowcaster: radar files in, forecast.nc and forecast.gif out."""
    from .pretrained import nowcast_folder

    shipped = not Path(args.run_dir).is_dir()
    output = Path(args.output or ("forecast" if shipped else Path(args.run_dir) / "predictions"))
    result = nowcast_folder(nowcaster, args.input, output)
    if args.json:
        print(json.dumps({"netcdf": str(result.netcdf), "animation": str(result.animation),
                          "inputs": [str(f) for f in result.inputs],
                          "summary": result.summary()}, indent=2))  # fmt: skip
        return 0
    print(f"{nowcaster!r}\nforecast from {', '.join(f.name for f in result.inputs)}:")
    for line in result.summary():
        print("  " + line)
    print(f"written: {result.netcdf}, {result.animation}")
    return 0


def cmd_export(args, extra: list[str]) -> int:
    from .training.export import export_run

    result = export_run(args.run_dir, args.format, args.output)
    check = (
        f"matches PyTorch to {result.max_error:.1e} on batches of "
        + " and ".join(map(str, result.checked_batches))
        if result.max_error is not None
        else "not checked: install convlstm[onnx] for onnxruntime"
    )  # fmt: skip
    if args.json:
        print(json.dumps({"path": str(result.path), "description": str(result.description),
                          "max_error": result.max_error}, indent=2))  # fmt: skip
    else:
        print(f"{result.path} ({check}); input and output described in {result.description}")
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


def cmd_import(args, extra: list[str]) -> int:
    from .interop.keras import import_keras_run

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    try:
        run_dir = import_keras_run(args.path, args.output, classes=classes,
                                   keras_version=args.keras_version,
                                   overwrite=args.overwrite)  # fmt: skip
    except FileExistsError as error:
        raise ValueError(f"{error}; use --overwrite to replace it") from None
    print(f"{args.path} -> {run_dir} (convlstm predict/export/evaluate --data work on it)")
    return 0


def cmd_list_models(args, extra: list[str]) -> int:
    from .models import list_models

    print("\n".join(list_models()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlstm", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    from . import __version__
    from .training.config import config_reference

    parser.add_argument("--version", action="version", version=f"convlstm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show tracebacks and the libraries' own messages")  # fmt: skip

    def add(name: str, func, help: str, epilog: str = ""):
        p = sub.add_parser(
            name, help=help, description=help, epilog=epilog, parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.set_defaults(func=func)
        return p

    p = add("train", cmd_train, "Train a model from a YAML config.",
            "examples:\n  convlstm train moving_digits --trainer.max_epochs 3\n"
            "  convlstm train --resume runs/<run>\n\nAny --section.key VALUE (or "
            "--section.key=VALUE) overrides the config, before or after CONFIG; values are "
            "YAML: 3, 0.1, [8, 16], null.\n\n" + config_reference())  # fmt: skip
    p.add_argument("config", nargs="?", help="YAML path or bundled config name")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its folder")
    p.add_argument("--run-dir", help="the run folder (default runs/<name>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run folder (default: refuse it)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML and exit")

    p = add("evaluate", cmd_evaluate, "Evaluate a trained run.",
            "example:\n  convlstm evaluate runs/<run> --split test --data other.yaml")  # fmt: skip
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("--data", help="YAML with a data section to evaluate on instead")
    p.add_argument("--split", default="test", choices=["val", "test"],
                   help="the split to evaluate on (default test)")
    p.add_argument("--json", action="store_true", help="print every metric as JSON on stdout")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="evaluate the weights of one of the run's checkpoints instead, e.g. "
                        "checkpoints/minute-5.ckpt (trainer.snapshot_minutes) or last.ckpt "
                        "of a run still training")  # fmt: skip

    p = add("predict", cmd_predict, "Predict on a file with a run folder alone: .npy/.npz, "
            "a video or NetCDF/Zarr, preprocessed as in training.",
            "examples:\n  convlstm predict runs/<run> clip.mp4\n"
            "  convlstm predict runs/<run> long.npy --stride 4 --output preds/\n"
            "  convlstm predict radar-nowcaster radar/2024/06/ --output forecast/\n\n"
            "A clip longer than the model's is cut into windows of its length (default: the "
            "last one only).")  # fmt: skip
    p.add_argument("run_dir", help="a finished run folder (or a copy of one), or a shipped "
                   "nowcaster's name (radar-nowcaster)")  # fmt: skip
    p.add_argument("input", help="the file to predict on; for a nowcaster, a folder of radar "
                   "composites, a glob pattern or a NetCDF/Zarr file")  # fmt: skip
    p.add_argument("--output", help="folder for predictions.npy, predictions.csv (classifiers) "
                   "or forecast.gif, and forecast.nc for nowcasters (default RUN_DIR/predictions; "
                   "./forecast for a shipped nowcaster)")  # fmt: skip
    p.add_argument("--stride", type=int, metavar="N",
                   help="predict on every window N frames apart (default: the last window)")
    p.add_argument("--variable", help="NetCDF variable (default: the run's, or the only one)")
    p.add_argument("--time-dim", help="NetCDF time dimension, when none is named like time")
    p.add_argument("--logits", action="store_true",
                   help="a classifier's raw outputs instead of probabilities")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")

    p = add("export", cmd_export, "Export a trained model to ONNX or TorchScript.",
            "example:\n  convlstm export runs/<run> --format onnx")  # fmt: skip
    p.add_argument("run_dir", help="a finished run folder (or a copy of one)")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx",
                   help="the export format (default onnx)")
    p.add_argument("--output", help="output file (default RUN_DIR/model.onnx or model.pt)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    p = add("diagnose", cmd_diagnose, "Diagnose a trained run: class similarity per layer, "
            "gradient flow through time, receptive field, gate statistics, attention maps.",
            "example:\n  convlstm diagnose runs/<run> --split val --object-scale 24\n\n"
            "Writes RUN_DIR/diagnostics/diagnostics.json (every number) and diagnostics.html "
            "(plots).")  # fmt: skip
    p.add_argument("run_dir", help="a run folder")
    p.add_argument("--data", help="YAML with a data section to diagnose on instead")
    p.add_argument("--split", default="val", choices=["val", "test"],
                   help="the split to diagnose on (default val)")
    p.add_argument("--object-scale", type=float, metavar="PIXELS",
                   help="size of the objects that matter, for receptive-field warnings")
    p.add_argument("--max-batches", type=int, default=8, metavar="N",
                   help="batches per diagnostic (default 8)")  # fmt: skip

    p = add("demo", cmd_demo, "Train a forecaster on MovingDigits and a classifier on "
            "SimilarMotions, and write their reports.", "example:\n  convlstm demo")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument("--root", default="runs", help="where the demo run folders go")

    p = add("import", cmd_import, "Import a trained Keras / TensorFlow classifier (.keras, "
            ".h5 or a SavedModel folder) as a run folder.",
            "example:\n  convlstm import published/fish_model --output runs/fish "
            "--classes calm,burst\n\nReads the file without TensorFlow; predict, export and "
            "evaluate --data then work on the run folder.")  # fmt: skip
    p.add_argument("path", help="a .keras or .h5 file, or a SavedModel folder")
    p.add_argument("--output", required=True, help="the run folder to write")
    p.add_argument("--classes", help="class names, comma-separated (2 for one sigmoid output)")
    p.add_argument("--keras-version", help="the Keras version that wrote the file, where the "
                   "file does not record it (decides what hard_sigmoid means)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")

    add("list-models", cmd_list_models, "List the registered model names.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides: list[str] = []
    if "train" in argv:
        try:
            argv, overrides = split_overrides(argv)
        except ConfigError as error:
            print(f"convlstm train: error: {error}", file=sys.stderr)
            return 2
    args, extra = parser.parse_known_args(argv)
    extra = [*extra, *overrides]
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from .runtime import configure_malloc, quiet_libraries
    from .training.errors import NonFiniteLossError

    configure_malloc()
    if not args.debug:
        quiet_libraries()
    try:
        return args.func(args, extra)
    except (ConfigError, FileNotFoundError, ValueError, NonFiniteLossError, ImportError,
            KeyError) as error:  # fmt: skip
        if args.debug:
            raise
        # A KeyError's message is its first argument (str() would quote it).
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"convlstm {args.command}: error: {message}", file=sys.stderr)
        return 3 if isinstance(error, NonFiniteLossError) else 2


if __name__ == "__main__":
    sys.exit(main())
