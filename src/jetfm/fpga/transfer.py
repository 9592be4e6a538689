"""The distillation's transfer set (`fpga.transfer`): training jets the student sees beyond the teacher's own.

A student distilled on the teacher's training split gets near one-hot soft targets (the teacher has fitted
those jets). `views: true` adds the re-simulation views (RS3L: the same hard events re-showered or
re-hadronised, `resimulate`), each with its jet's class label, so the KL term also sees jets the teacher was
not trained on. Preprocessing writes the views into the training split's HDF5 shards beside the nominal jets
(rows with view >= 0; an event's views share its split and group), so the transfer set is those shards read
with every row; validation and test stay nominal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jetfm import paths
from jetfm.configkeys import strict_fields

VIEWS_SUFFIX = ".views.root"  # paths.sim_file's name of a re-simulation views file


@dataclass(frozen=True)
class TransferSet:
    """What the distillation trains on besides the nominal training jets."""

    views: bool = False  # the re-simulation views of the training split

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TransferSet:
        return cls(**strict_fields(cls, config["fpga"].get("transfer") or {}, "fpga.transfer"))

    @property
    def nominal_only(self) -> bool:
        """Whether the training stream drops the view rows (view != -1)."""
        return not self.views


def check_views(config: dict[str, Any]) -> None:
    """Refuse a transfer set of views that the workflow does not produce (at DAG time: one line)."""
    if TransferSet.from_config(config).views and not config["resimulate"]["enabled"]:
        raise ValueError(
            "fpga.transfer.views is true but resimulate.enabled is false: the transfer set reads the "
            "re-simulation views (expected resimulate.enabled: true, or fpga.transfer.views: false)"
        )


def view_shards(config: dict[str, Any], groups: dict[int, list[str]]) -> list[str]:
    """The training shards holding views (those whose preprocessing group reads a views file); [] when the
    transfer set is off. Raises (`check_views`) when views are asked for but not produced."""
    check_views(config)
    if not TransferSet.from_config(config).views:
        return []
    h5 = paths.h5_dir(config["dataset"])
    return [
        str(paths.shard_path(h5, "train", g))
        for g, files in groups.items()
        if any(str(f).endswith(VIEWS_SUFFIX) for f in files)
    ]
