"""Jet images: particles -> pT-weighted Δη-Δφ grids (built on the batch inside the CNN's forward), the
average image per class for the report, and transfer learning of image networks."""

from __future__ import annotations
