"""The commands that look at a trained model: `evaluate`, `predict`, `inspect`, `serve`, `report` and
`export`, each given a run directory or a checkpoint. Each imports what it needs when it runs (why:
cli/parser.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnzoo.errors import CnnzooError


def cmd_evaluate(args) -> int:
    from cnnzoo.data import load_split
    from cnnzoo.train import evaluate
    from cnnzoo.train.rundir import RunDir
    from cnnzoo.train.runtime import Runtime
    from cnnzoo.viz.notebook import evaluation_text
    from cnnzoo.viz.plots import confusion_figure, save_figure
    from cnnzoo.workflows import load_trained
    from cnnzoo.workflows.run import stored_data_dir

    trained = load_trained(args.run, device=args.device)
    config = trained.config
    split = load_split(config.dataset, args.split, root=args.data_dir or stored_data_dir(config),
                       device=next(trained.model.parameters()).device)
    runtime = Runtime.from_config(config.replace(device=args.device))
    runtime.configure_threads()
    result = evaluate(trained.model, split, **trained.input_spec.kwargs(), batch_size=config.eval_batch_size,
                      runtime=runtime, tta=config.tta if args.tta is None else args.tta)
    confusion = result.confusion(len(trained.classes)).tolist()
    print(evaluation_text(result.accuracy, result.loss, confusion, trained.classes, split=args.split))
    out = Path(args.out) if args.out else RunDir(RunDir.holding(args.run)).evaluate_confusion_path(args.split)
    save_figure(confusion_figure(confusion, trained.classes), out)
    print(f"\nconfusion matrix image: {out}")
    return 0


def cmd_predict(args) -> int:
    import torch

    from cnnzoo.data import load_image
    from cnnzoo.data import canonical_dataset_name
    from cnnzoo.train import predict
    from cnnzoo.workflows import load_trained

    if args.top_k < 1:
        raise CnnzooError(f"--top-k must be a positive number of classes, got {args.top_k}.")
    trained = load_trained(args.checkpoint, device=args.device)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    # Frame each image the way the model's training images were made.
    framing = canonical_dataset_name(trained.config.dataset)
    failures = 0
    for path in args.images:
        try:
            image = load_image(path, invert=invert, framing=framing)
        except CnnzooError as error:
            print(f"cnnzoo: error: {error}", file=sys.stderr)
            failures += 1
            continue
        probabilities = predict(trained.model, image.unsqueeze(0), **trained.input_spec.kwargs())[0]
        top = torch.topk(probabilities, min(args.top_k, len(trained.classes)))
        ranked = ", ".join(f"{trained.classes[i]} {100 * p:.1f}%" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {ranked}")
    return 2 if failures else 0


def cmd_inspect(args) -> int:
    from cnnzoo.viz.inside import combined_figure
    from cnnzoo.viz.plots import image_format, save_figure
    from cnnzoo.workflows.look_inside import inspect

    image_format(args.output)  # a bad file name fails before the model loads
    if not args.images and not args.test_index:
        raise CnnzooError("name the images to inspect: image files, or --test-index N with test-set indices.")
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    inspection = inspect(args.run, [*args.images, *args.test_index], target=args.target, invert=invert,
                         device=args.device)
    for source, ranked in zip(inspection.sources, inspection.top_k(3)):
        print(f"{source}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in ranked))
    print(f"wrote {save_figure(combined_figure(inspection, args.layer), args.output)}")
    return 0


def cmd_serve(args) -> int:
    from cnnzoo.workflows.serve import serve

    serve(args.run, host=args.host, port=args.port, device=args.device)
    return 0


def cmd_report(args) -> int:
    from cnnzoo.train import RunDir
    from cnnzoo.viz.report import write_report

    run_dir = RunDir.open(args.run)
    print(f"wrote {write_report(run_dir.path, args.output)}")
    return 0


def cmd_export(args) -> int:
    from cnnzoo.workflows.export import export_model

    result = export_model(args.source, args.output, format=args.format, check=args.check, data_dir=args.data_dir)
    checked = ("not checked" if result.max_abs_diff is None
               else f"matches PyTorch to {result.max_abs_diff:.1e} on real test images")
    if result.format == "keras":
        spec = result.input_spec
        normalized = "" if spec.mean is None else f", normalized with mean {spec.mean} and std {spec.std}"
        takes = (f"float N×{spec.input_size[0]}×{spec.input_size[1]}×{result.channels} in "
                 f"(pixels / 255, resized{normalized})")
    else:
        takes = "uint8 N×1×28×28 in"
    print(f"wrote {result.path} ({result.format}, {takes}, {len(result.classes)} logits out; {checked})")
    return 0
