"""python -m kit.modelentry config|bundle (make model-config, make import-bundle; see docs/own-model.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit.modelentry.signature import EntryError


def _say(line: str) -> None:
    print(f"[odk] {line}", file=sys.stderr)


def cmd_config(args) -> int:
    from kit.modelentry.entry import check_name, model_config, parse_parameters, write_entry
    from kit.modelentry.signature import parse_dims, read_signature

    name = check_name(args.name)
    if (Path(args.models_dir) / name).exists():
        raise EntryError(f"{Path(args.models_dir) / name} already exists; remove it or choose another NAME")
    params = parse_parameters(args.spacing_mm, args.hu_window, args.labels, args.label_nesting,
                              args.output_activation)
    dims = parse_dims(args.input_dims) if args.input_dims.strip() else None
    model = Path(args.model)
    sig = read_signature(model, dims)
    config = model_config(name, sig, params, args.max_batch_size)
    target = write_entry(Path(args.models_dir), name, model, sig, config)
    shapes = ", ".join(f"{t.name} {list(t.shape[1:])}" for t in (*sig.inputs, *sig.outputs))
    _say(f"wrote {target} ({sig.platform}, max_batch_size {config.max_batch_size}; {shapes})")
    for key in ("spacing_mm", "hu_window"):
        if key not in config.parameters:
            _say(f"warning: no {key.upper()} given: the operator then needs ODK_{key.upper()} in env.list")
    _say(f"serve it: make triton MODELS_DIR={args.models_dir}; run it: TRITON_MODEL_NAME={name} in env.list")
    return 0


def cmd_bundle(args) -> int:
    from kit.modelentry.bundle import import_bundle

    target, warnings = import_bundle(Path(args.bundle), Path(args.models_dir), args.name or None,
                                     args.allow_unsupported, args.format or "torchscript")
    for line in warnings:
        _say(f"warning: {line}")
    _say(f"wrote {target} from the bundle {args.bundle} (what came from where: {target / 'IMPORTED.md'})")
    _say(f"serve it: make triton MODELS_DIR={args.models_dir}; run it: TRITON_MODEL_NAME={target.name} in env.list")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.modelentry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config", help="write MODELS_DIR/NAME from an ONNX or TorchScript file")
    p.add_argument("--model", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--models-dir", default="local/models")
    p.add_argument("--input-dims", default="", help="the input's dims without the batch axis (TorchScript)")
    p.add_argument("--max-batch-size", type=int, default=4)
    p.add_argument("--spacing-mm", default="")
    p.add_argument("--hu-window", default="")
    p.add_argument("--labels", default="")
    p.add_argument("--label-nesting", default="")
    p.add_argument("--output-activation", default="")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("bundle", help="write MODELS_DIR/NAME from a MONAI bundle")
    p.add_argument("--bundle", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--models-dir", default="local/models")
    p.add_argument("--allow-unsupported", action="store_true",
                   help="import even when a transform cannot be reproduced (each one is still named)")
    p.add_argument("--format", default="torchscript", help="torchscript (default) or onnx (exported here)")
    p.set_defaults(func=cmd_bundle)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EntryError as exc:
        for line in exc.details:
            _say(line)
        print(f"[odk] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
