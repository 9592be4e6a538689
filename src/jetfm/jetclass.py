"""The JetClass ROOT layout (Qu, Li, Qian 2022): branch names and dtypes, shared by writer and reader.

One source of truth so the simulation writes exactly what preprocessing (and the public JetClass files) read.
"""

from __future__ import annotations

import numpy as np

from jetfm import CLASSES

TREE_NAME = "tree"

# Jagged, pT-sorted per-particle branches.
PARTICLE_FLOAT_BRANCHES: tuple[str, ...] = (
    "part_px", "part_py", "part_pz", "part_energy", "part_deta", "part_dphi",
    "part_d0val", "part_d0err", "part_dzval", "part_dzerr", "part_charge",
)  # fmt: skip
PARTICLE_INT_BRANCHES: tuple[str, ...] = (
    "part_isChargedHadron", "part_isNeutralHadron", "part_isPhoton", "part_isElectron", "part_isMuon",
)  # fmt: skip
PARTICLE_BRANCHES: tuple[str, ...] = PARTICLE_FLOAT_BRANCHES + PARTICLE_INT_BRANCHES

# Labels carry mixed dtypes in the public files; we reproduce them exactly.
LABEL_DTYPES: dict[str, np.dtype] = {
    "label_QCD": np.dtype("float32"),
    "label_Hbb": np.dtype("bool"),
    "label_Hcc": np.dtype("bool"),
    "label_Hgg": np.dtype("bool"),
    "label_H4q": np.dtype("bool"),
    "label_Hqql": np.dtype("bool"),
    "label_Zqq": np.dtype("int32"),
    "label_Wqq": np.dtype("int32"),
    "label_Tbqq": np.dtype("int32"),
    "label_Tbl": np.dtype("int32"),
}
LABEL_BRANCHES: tuple[str, ...] = tuple(f"label_{c}" for c in CLASSES)

JET_BRANCHES: tuple[str, ...] = (
    "jet_pt", "jet_eta", "jet_phi", "jet_energy", "jet_nparticles", "jet_sdmass",
    "jet_tau1", "jet_tau2", "jet_tau3", "jet_tau4",
)  # fmt: skip
AUX_BRANCHES: tuple[str, ...] = (
    "aux_genpart_eta", "aux_genpart_phi", "aux_genpart_pid", "aux_genpart_pt", "aux_truth_match",
)  # fmt: skip

# Branches we add on top of JetClass (design.md).
EVENT_ID_BRANCH = "event_id"  # uint64
VIEW_BRANCH = "view"  # int16 in *.views.root

# File-name prefixes of the public JetClass release, per class.
JETCLASS_FILE_PREFIX: dict[str, str] = {
    "QCD": "ZJetsToNuNu", "Hbb": "HToBB", "Hcc": "HToCC", "Hgg": "HToGG", "H4q": "HToWW4Q",
    "Hqql": "HToWW2Q1L", "Zqq": "ZToQQ", "Wqq": "WToQQ", "Tbqq": "TTBar", "Tbl": "TTBarLep",
}  # fmt: skip


def branch_dtypes() -> dict[str, np.dtype]:
    """Flat (per-jet) dtype of every JetClass branch; jagged particle branches give their element dtype."""
    out: dict[str, np.dtype] = {}
    out.update({b: np.dtype("float32") for b in PARTICLE_FLOAT_BRANCHES})
    out.update({b: np.dtype("int32") for b in PARTICLE_INT_BRANCHES})
    out.update(LABEL_DTYPES)
    out.update({b: np.dtype("float32") for b in JET_BRANCHES})
    out.update({b: np.dtype("float32") for b in AUX_BRANCHES})
    return out


def class_index(name: str) -> int:
    """Integer label of a class name, with a clear error for unknown names."""
    try:
        return CLASSES.index(name)
    except ValueError:
        raise ValueError(f"unknown jet class {name!r}; expected one of {', '.join(CLASSES)}") from None
