"""A real single-node Slurm for tests: install.sh / start.sh / stop.sh plus Python helpers (cluster.py)."""
