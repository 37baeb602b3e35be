"""Both metrics under a real two-process gloo group: every rank computes the whole-set numbers."""

import math

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from convlstm.metrics import ClassificationMetrics, ForecastMetrics


def _data():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(11, generator=g)
    labels = (torch.rand(11, generator=g) < scores).long()
    pred, truth = torch.rand(5, 3, 1, 12, 12, generator=g), torch.rand(5, 3, 1, 12, 12, generator=g)
    return scores, labels, pred, truth


def _metrics(parts_c, parts_f):
    c, f = ClassificationMetrics(2), ForecastMetrics(thresholds=[0.5])
    for s, t in parts_c:
        c.update(s, t)
    for p, t in parts_f:
        f.update(p, t)
    return c.compute(), f.compute()


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    scores, labels, pred, truth = _data()
    # Uneven shards: rank 0 gets 4 clips and 2 sequences, rank 1 gets 7 clips and 3 sequences.
    c_slice, f_slice = (slice(0, 4), slice(0, 2)) if rank == 0 else (slice(4, 11), slice(2, 5))
    result = _metrics([(scores[c_slice], labels[c_slice])], [(pred[f_slice], truth[f_slice])])
    torch.save(result, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float) and math.isnan(a[key]):
            assert math.isnan(b[key]), key
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)


def test_two_process_sync_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    scores, labels, pred, truth = _data()
    expected_c, expected_f = _metrics([(scores, labels)], [(pred, truth)])
    for rank in range(2):
        got_c, got_f = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert got_c["num_samples"] == 11 and got_f["num_sequences"] == 5
        _assert_same(got_c, expected_c)
        _assert_same(got_f, expected_f)
