"""Scaling-law sweeps: a grid of model sizes x training-set sizes x repetitions, one training run per cell
(through the one training loop), and the fit of L(N, D) = E + A/N^alpha + B/D^beta with its uncertainties."""
