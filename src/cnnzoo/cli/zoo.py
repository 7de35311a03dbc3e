"""The commands about what ships and what this machine has: the zoo's models (`models`, `summary`,
`draw`), the data sets' images (`show`) and the installation itself (`doctor`). Each imports what it
needs when it runs (why: cli/parser.py)."""

from __future__ import annotations

from cnnzoo.cli.format import human, print_table
from cnnzoo.errors import CnnzooError


def cmd_models(args) -> int:
    from cnnzoo.models.summary import models_table

    rows = models_table()
    header = ("model", "input", "classes", "params", "mult-adds", "form and origin")
    lines = [(r.name, "×".join(map(str, r.input_shape)), str(r.num_classes), f"{r.params:,}", human(r.mult_adds),
              r.description) for r in rows]
    print_table(header, lines, right=(2, 3, 4))
    return 0


def cmd_summary(args) -> int:
    from cnnzoo.models import build_model, get_model_spec
    from cnnzoo.models.summary import summarize

    spec = get_model_spec(args.model)
    channels, h, w = args.input or spec.input_shape
    if h != w:
        raise CnnzooError(f"--input must be square for the zoo's models, got {h}×{w}.")
    model = build_model(args.model, num_classes=args.classes, in_channels=channels, input_size=h,
                        norm=args.norm, **dict(args.option or []))
    print(summarize(model, (channels, h, w), name=args.model))
    return 0


def cmd_draw(args) -> int:
    from cnnzoo.viz.diagrams import draw_model

    print(f"wrote {draw_model(args.model, args.output, style=args.style, input_shape=args.input)}")
    return 0


MAX_SHOWN = 1000  # images in one `cnnzoo show` figure (a hundred of each of ten classes with --per-class)


def cmd_show(args) -> int:
    from cnnzoo.data import load_split
    from cnnzoo.viz.plots import display_sample, image_grid_figure, save_figure

    per_class = args.per_class is not None
    count = args.per_class if per_class else args.n
    flag = "--per-class" if per_class else "--n"
    if count < 1:
        raise CnnzooError(f"{flag} must be a positive number of images, got {count}.")
    # Drawing takes about a second per hundred images, and past this a grid is no longer legible.
    most = MAX_SHOWN // 10 if per_class else MAX_SHOWN
    if count > most:
        raise CnnzooError(f"{flag} {count} asks for more images than one figure shows legibly; ask for at most {most}"
                          f"{' of each class' if per_class else ''}.")
    if args.seed is not None and args.seed < 0:
        raise CnnzooError(f"--seed must be a whole number of at least 0, got {args.seed}.")
    seed = args.seed if args.seed is not None else 0 if args.random else None
    split = load_split(args.dataset, args.split, root=args.data_dir)
    labels = split.labels.tolist()
    chosen = display_sample(labels, count, seed=seed, per_class=per_class)
    which = "first" if seed is None else f"random (seed {seed})"
    shown = f"{which} {count} of each class" if per_class else f"{which} {len(chosen)} images"
    figure = image_grid_figure(split.images[chosen], [labels[i] for i in chosen], split.classes,
                               ncols=count if per_class else 8, title=f"{args.dataset} {args.split}: {shown}")
    output = args.output or f"{args.dataset}-{args.split}.png"
    print(f"wrote {save_figure(figure, output)}")
    return 0


def cmd_doctor(args) -> int:
    import platform

    import torch
    import torchvision

    from cnnzoo import __version__
    from cnnzoo.data import DATASETS, load_split, resolve_data_root

    print(f"cnnzoo {__version__}  torch {torch.__version__}  torchvision {torchvision.__version__}  "
          f"python {platform.python_version()}")
    from cnnzoo.device import mps_available
    from cnnzoo.train import Runtime, TrainConfig

    gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    for name in gpus + (["mps"] if mps_available() else []):
        # What `--precision auto` and the fast path would choose there, and why (train/runtime.py decides).
        chosen = Runtime.from_config(TrainConfig(device=name)).describe()
        print(f"device {name}: {chosen['device_name']}: precision {chosen['precision']} "
              f"({chosen['reasons']['precision']}); compile {'on' if chosen['compile'] else 'off'} "
              f"({chosen['reasons']['compile']})")
    if not gpus:
        print("device: no CUDA GPU found" + ("; auto trains on mps" if mps_available() else "; cpu only"))
    print(f"cpu threads: {torch.get_num_threads()}")
    root = resolve_data_root(args.data_dir)
    print(f"data root: {root}")
    usable = 0
    for name in DATASETS:
        try:
            sizes = [len(load_split(name, split, root=root, download=False)) for split in ("train", "test")]
            # Every file load_split reads, .gz or extracted, is checked against its official MD5.
            print(f"  {name}: present, checksums verified ({sizes[0]:,} train / {sizes[1]:,} test images)")
            usable += 1
        except CnnzooError as error:
            print(f"  {name}: not usable: {error}")
    if not usable:
        print(f"no data set is usable under {root}; set CNNZOO_DATA (or --data-dir) to the folder that holds "
              "them, or run any training command to download them.")
        return 1
    return 0
