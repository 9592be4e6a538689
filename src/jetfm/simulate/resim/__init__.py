"""Re-simulation views (RS3L): K re-hadronised or re-showered realisations of the same hard events.

`run.resimulate_shard` is the entry (`jetfm resimulate`, rule `resimulate`); `engine` holds the Pythia
machinery, `views` pushes each view through the nominal simulation chain, `settings` validates the config,
`plot` measures view-to-view against event-to-event spread.
"""
