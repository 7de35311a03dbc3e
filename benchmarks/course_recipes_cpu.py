"""Train course recipes over seeds on the CPU into run directories, with the course's data split,
before `cnnzoo train` wired `val_holdout` and `train_acc` (issue 18). Test accuracy is what
`cnnzoo train --recipe NAME --seed S --device cpu` gives: the eval-mode re-evaluation of the
training set draws no random numbers and changes no state.

    PYTHONPATH=src python benchmarks/course_recipes_cpu.py OUT lenet5-keras:0,1,2 lenet5-course:0,1,2
"""

import json
import sys
import time

from cnnzoo.data import load_data
from cnnzoo.recipes import load_recipe
from cnnzoo.train.device import Runtime
from cnnzoo.train.loop import evaluate, fit, input_size_for, input_transform
from cnnzoo.workflows.run import finish_run, model_for, write_run_config
from cnnzoo.train.rundir import RunDir


def run(out: str, name: str, seed: int) -> dict:
    config = load_recipe(name).config.replace(seed=seed, device="cpu")
    runtime = Runtime.from_config(config)
    data = load_data(config.dataset, root=config.data_dir, device="cpu", val_split=config.val_split, seed=seed,
                     val_holdout=config.val_holdout)
    model = model_for(config, len(data.train.classes))
    run_dir = RunDir.create(out, f"{name}-seed{seed}", overwrite=True)
    write_run_config(run_dir, config, data, model, runtime)
    eval_train = []

    def course_train_accuracy(epoch, row, history):
        if config.train_acc == "eval":
            start = time.perf_counter()
            transform = input_transform(config, data.info, input_size_for(config))
            acc = evaluate(model, data.train, batch_size=config.eval_batch_size, runtime=runtime, **transform).accuracy
            eval_train.append({"epoch": epoch, "train_acc_eval": acc, "eval_s": time.perf_counter() - start})
            print(f"  epoch {epoch}: train accuracy re-evaluated in eval mode {100 * acc:.2f}%", flush=True)

    history = fit(model, data, config, run_dir=run_dir, runtime=runtime, callbacks=[course_train_accuracy])
    finish_run(run_dir, model, data, config, runtime)
    last = history.epochs[-1]
    record = {"recipe": name, "seed": seed, "test_acc": last["test_acc"], "val_acc": last["val_acc"],
              "train_acc_running": last["train_acc"], "train_s": sum(r["time_s"] for r in history.epochs),
              "steps_per_epoch": len(history.batch_loss) // len(history.epochs), "eval_train": eval_train}
    run_dir.write_json("course_record.json", record)
    return record


if __name__ == "__main__":
    out, *jobs = sys.argv[1:]
    for job in jobs:
        name, seeds = job.split(":")
        for seed in map(int, seeds.split(",")):
            print(json.dumps(run(out, name, seed)), flush=True)
