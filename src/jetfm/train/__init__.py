"""Supervised training: typed config, HDF5 loader, DDP, checkpoints, metrics, plots, the loop, the CLI.

OpenMP threads that spin while waiting are ~5x slower when the cores are shared with other jobs (a shared
login/CPU node, or several ranks per node): we measured a ParT step at 5.7 s with the default policy and
1.0 s with OMP_WAIT_POLICY=PASSIVE on a loaded 2-core machine. The default is set here, before torch is
imported by the training modules; export OMP_WAIT_POLICY=ACTIVE to override on dedicated nodes.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
