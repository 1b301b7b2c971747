"""Class-name zero-shot of the sandbox model over independent draws of its never-trained word rows.

The token-embedding rows of words no pretraining caption contains are random and untouched by
training (see ``biomedvr_cli.sandbox.modelio.draw_unseen_words``). Class names are made of such
words, so class-name zero-shot depends only on that draw. This script redraws those rows from
seeds ``first-seed .. first-seed + draws - 1`` (everything the model learned stays as shipped)
and prints each task's class-name zero-shot accuracy, first for the rows as loaded:
it shows how far from chance a single draw can land.

    .venv/bin/python experiments/unseen_word_draws.py --draws 8 --per-class 60
"""

from __future__ import annotations

import argparse
import statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=60, help="test images per class")
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped ones)")
    args = parser.parse_args()

    import torch

    from biomedvr_cli.sandbox import WEIGHTS_PATH
    from biomedvr_cli.sandbox.modelio import draw_unseen_words, load_sandbox
    from biomedvr_cli.sandbox.properties import task_properties
    from biomedvr_cli.sandbox.tasks import list_tasks

    torch.set_num_threads(2)
    backbone = load_sandbox(args.weights or WEIGHTS_PATH)
    tasks = list_tasks()

    def measure() -> list[float]:
        return [task_properties(backbone, t, n_per_class=args.per_class)["class_name_zero_shot_no_shift"] for t in tasks]

    names = [t.name for t in tasks]
    chance = ", ".join(f"{1 / len(t.class_names):.2f}" for t in tasks)
    print("draw".ljust(10) + "".join(n.rjust(20) for n in names) + f"   (chance {chance})")
    print("as loaded".ljust(10) + "".join(f"{v:20.3f}" for v in measure()))
    columns: list[list[float]] = [[] for _ in tasks]
    for seed in range(args.first_seed, args.first_seed + args.draws):
        draw_unseen_words(backbone.model, backbone.tokenizer, seed)
        values = measure()
        for column, v in zip(columns, values):
            column.append(v)
        print(f"seed {seed}".ljust(10) + "".join(f"{v:20.3f}" for v in values))
    print("mean".ljust(10) + "".join(f"{statistics.mean(c):20.3f}" for c in columns))
    print("max".ljust(10) + "".join(f"{max(c):20.3f}" for c in columns))


if __name__ == "__main__":
    main()
