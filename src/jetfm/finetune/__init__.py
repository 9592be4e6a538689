"""Finetune stage: a pretrained backbone (or scratch) on a labelled fraction, and the data-efficiency study.

`run.run_finetuning` is the stage's entry (`jetfm finetune`, rule `finetune`); `report` turns the runs into
the efficiency table and the report's headline; `efficiency` is the generic table/figure code that the
jet-images transfer study reuses.
"""

import jetfm.train  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
