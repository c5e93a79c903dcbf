"""The rare class's numbers in a `medsynth utility` result, for the per-class balancing scripts
(balance_all_classes.sh, balance_augment.sh, balance_gan_seeds.sh, balance_real_copies.sh), which print them as tables."""
import json


def rows_by_set(path, rare):
    """{set name: (rare-class recall summary, mean balanced accuracy)} in the result's row order. The
    set name is "real" for real only, else the synthetic folder's name ("real + WORK/class-C/bal-gan")."""
    rows = {}
    for row in json.load(open(path))["rows"]:
        key = row["training_data"].split(" + ")[-1].rstrip("/").split("/")[-1]
        rows[key] = (row["per_class_recall"][rare], row["balanced_accuracy"]["mean"])
    return rows


def cell(entry):
    """'mean [ci low,ci high] (balanced accuracy)' of one set."""
    recall, balanced = entry
    return f"{recall['mean']:.3f} [{recall['ci95_low']:.2f},{recall['ci95_high']:.2f}] ({balanced:.3f})"


def mean_cell(entries):
    """Mean recall (mean balanced accuracy) over several sets or classes, 26 wide; '-' for none."""
    if not entries:
        return f"{'-':>26}"
    return f"{sum(r['mean'] for r, _ in entries) / len(entries):>14.3f} ({sum(b for _, b in entries) / len(entries):.3f})    "


def print_table(work, classes, result, names, title):
    """The rare-class table of a per-class script: one line per class C read from
    WORK/class-C/RESULT/utility.json, one column per set in `names` ({set: column title}), and a
    mean line over the classes that have the set."""
    import os
    print(title)
    print(f"{'class':>5}  " + "  ".join(f"{n:>26}" for n in names.values()))
    means = {k: [] for k in names}
    for c in classes:
        path = os.path.join(work, f"class-{c}", result, "utility.json")
        if not os.path.exists(path):
            print(f"{c:>5}  (no result)")
            continue
        rows = rows_by_set(path, c)
        for key in names:
            if key in rows:
                means[key].append(rows[key])
        print(f"{c:>5}  " + "  ".join(f"{cell(rows[k]) if k in rows else '-':>26}" for k in names))
    print(f"{'mean':>5}  " + "  ".join(mean_cell(means[k]) for k in names))
