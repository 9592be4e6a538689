"""DDP on CPU (gloo): W ranks optimise what one process optimises on the same global batch.

RS3L's contrastive loss gathers the other ranks' projections (with gradients) as negatives: 2 ranks give
the loss and the gradient of one process on the concatenated batch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from ddp_worker import rs3l_batch, rs3l_rank

from jetfm.pretrain.contrastive import nt_xent


@pytest.mark.parametrize("world", [2, 4])
def test_rs3l_ranks_equal_one_process_on_the_concatenated_batch(tmp_path: Path, world: int) -> None:
    mp.spawn(rs3l_rank, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    torch.manual_seed(0)
    proj = torch.nn.Linear(6, 4)
    x, event = rs3l_batch()
    loss = nt_xent(proj(x), event, 0.2)
    loss.backward()
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["loss"] == pytest.approx(loss.item(), rel=1e-6)
        for g, p in zip(got["grads"], proj.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
    # Local negatives only (the bug this guards against) give another loss: the test can fail.
    half = (
        nt_xent(proj(x[:12]), event[:12], 0.2).item() / 2 + nt_xent(proj(x[12:]), event[12:], 0.2).item() / 2
    )
    assert half != pytest.approx(loss.item(), rel=1e-3)
