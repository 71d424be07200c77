"""torchrun helpers: no-ops in one process; under torchrun, sharded counts all-reduce to the
one-process sum."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from helpers import torchrun
from omegaconf import OmegaConf

from pcnets.data import build_dataset
from pcnets.runtime import distributed as d


def test_single_process_helpers_are_no_ops(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert d.init_distributed() == (0, 1, 0)
    assert d.is_main() and d.world_size() == 1 and not d.active()
    assert d.all_reduce_sum(3) == 3
    assert d.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    np.testing.assert_array_equal(d.all_reduce_sum(np.array([4, 5])), [4, 5])
    tensor = torch.tensor([1.0, 2.0])
    assert torch.equal(d.all_reduce_sum(tensor), tensor)
    d.barrier()
    d.cleanup()


@pytest.mark.parametrize(("n", "world"), [(0, 2), (1, 3), (10, 3), (1000, 7), (5, 5)])
def test_shards_cover_every_index_once(n, world):
    shards = [d.shard_indices(n, r, world) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match="rank 2"):
        d.shard_indices(10, 2, 2)


SCRIPT = """
import json, sys
import numpy as np
from omegaconf import OmegaConf
from pcnets.runtime import distributed as d
from pcnets.data import build_dataset
from pcnets.runtime.loading import build_loader

rank, world, local_rank = d.init_distributed()
correct = np.arange(101) % 3 != 0
mine = d.shard_indices(len(correct), rank, world)
counts = d.all_reduce_sum([int(correct[mine].sum()), len(mine)])
ranks = d.all_reduce_sum(1)
cfg = OmegaConf.create({"kind": "synthetic", "num_images": 11, "size": 2, "num_classes": 5})
cfg.batch_size, cfg.workers = 4, 0
labels = [y for _, y in build_loader(build_dataset(cfg, None), cfg, "cpu", distributed=True)]
loaded = d.all_reduce_sum([sum(len(y) for y in labels), sum(int(y.sum()) for y in labels)])
d.barrier()
if d.is_main():
    result = {"counts": counts, "ranks": ranks, "world": world, "loaded": loaded}
    json.dump(result, open(sys.argv[1], "w"))
d.cleanup()
"""


def test_torchrun_two_processes_sum_to_the_one_process_counts(tmp_path):
    script = tmp_path / "count.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "result.json"
    torchrun([script, out], cwd=tmp_path, timeout=120)
    result = json.loads(out.read_text())
    correct = np.arange(101) % 3 != 0
    assert result["counts"] == [int(correct.sum()), 101]
    assert result["ranks"] == 2 and result["world"] == 2
    cfg = OmegaConf.create({"kind": "synthetic", "num_images": 11, "size": 2, "num_classes": 5})
    assert result["loaded"] == [11, sum(build_dataset(cfg, None).targets)]
