"""jetfm: jets from Pythia simulation to FPGA firmware."""

from __future__ import annotations

__version__ = "0.1.0"

# JetClass order; the integer label of a class is its index here.
CLASSES: tuple[str, ...] = ("QCD", "Hbb", "Hcc", "Hgg", "H4q", "Hqql", "Zqq", "Wqq", "Tbqq", "Tbl")
