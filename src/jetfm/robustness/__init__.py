"""Robustness and calibration of every trained tagger (issue 17).

`samples`: held-out events re-simulated in a nominal and in shifted versions (RS3L re-simulation with per-view
settings, own event-id stream and seeds); `distance`: how far a tagger's outputs move between the versions of
one event; `calibration`: temperature scaling, reliability and deep-ensemble spread; `evaluate`: one model's
numbers on every sample; `table` and `plots`: the comparison across models.
"""
