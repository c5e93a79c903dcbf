"""The rare class's numbers in a `medsynth utility` result, for the per-class balancing scripts
(balance_all_classes.sh, balance_gan_seeds.sh, balance_real_copies.sh), which print them as tables."""
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
