"""Pretrain stage: self-supervised objectives on the ParT backbone (masked particles with continuous or VQ
token targets, re-simulation contrastive), run by the one training loop of `jetfm.train`.

`run.run_pretraining` is the stage's entry (`jetfm pretrain`, rules `pretrain` and `tokenizer`).
"""

import jetfm.train  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported)
