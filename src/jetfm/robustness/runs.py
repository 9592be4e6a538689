"""Which run directories the robustness stage evaluates, their labels and their ensemble members.

Names in `robustness.models` are runs `models/<dataset>_<name>` (the train rule's layout); a name with a slash
is any run directory under results/ (a fine-tuned or pretrained-then-fine-tuned run), so users can list
new model families in the config without touching the rules. Paths here are relative to results/.
"""

from __future__ import annotations

from typing import Any


def run_of(name: str, dataset: str) -> str:
    """Run directory of a `robustness.models` entry; `{dataset}` in it stands for the config's dataset, so a
    preset that inherits the list evaluates its own runs (finetune/{dataset}/scratch_1_0)."""
    name = name.replace("{dataset}", dataset)
    return name if "/" in name else f"models/{dataset}_{name}"


def label_of(run: str, dataset: str) -> str:
    """The model's label in tables: the run directory's last part without the dataset prefix."""
    return run.rstrip("/").rsplit("/", 1)[-1].removeprefix(f"{dataset}_")


def member_runs(run: str, dataset: str, ensemble: dict[str, Any]) -> list[str]:
    """Ensemble members besides the run itself (`<run>_seed<k>`, k = 1..N-1) if its model has an ensemble."""
    model = run.removeprefix(f"models/{dataset}_")
    if model == run or model not in ensemble["models"]:
        return []
    return [f"{run}_seed{k}" for k in range(1, ensemble["members"])]
