"""Finetune stage: a pretrained backbone (or scratch) on a labelled fraction, and the data-efficiency study.

`run.run_finetuning` is the stage's entry (`jetfm finetune`, rule `finetune`); `objective.FineTune` the
objective of the one loop; `backbone` reads an exported backbone or a checkpoint (architecture, inputs);
`export` writes the backbone-only file and its model card (`jetfm export`); `adapter` turns a user's
4-vector HDF5 into shards with the backbone's features; `schedule` holds layer-wise LR decay,
freeze-then-unfreeze and the best-validation weights; `labelled` the labelled subsets; `protocol` the arms,
the validation sweep and their paths; `efficiency` the generic table/figure code with paired gains (the
jet-images transfer study reuses it); `report` the efficiency table and the report's headline.
See docs/foundation-model.md.
"""

import jetfm.train  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
