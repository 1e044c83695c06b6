"""TensorLoader / DatasetLoader: coverage, seeded order, resume, DDP shards, augmentation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from netgrow.data import DatasetLoader, InMemoryDataset, TensorLoader, epoch_order, make_loader, nested_subsets
from netgrow.data.transforms import CropFlip, default_padding, mix_seed, resolve_augment
from netgrow.errors import DataError, NetgrowTypeError, NetgrowValueError


def index_set(n: int = 23, num_classes: int = 5) -> InMemoryDataset:
    """x[i] is a 1×1×1 float equal to i (mean 0, std 1), so a batch names its sample indices."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    return InMemoryDataset(x, torch.arange(n) % num_classes, [str(c) for c in range(num_classes)], "idx",
                           mean=(0.0,), std=(1.0,))  # fmt: skip


def images(n: int = 20, size: int = 8, channels: int = 3, seed: int = 0) -> InMemoryDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    return InMemoryDataset(x, torch.arange(n) % 4, ["a", "b", "c", "d"], "img")


def seen(loader) -> list[int]:
    return [int(v) for x, _ in loader for v in x.flatten().tolist()]


class Plain(Dataset):
    """A map-style data set that is *not* in memory (forces the DataLoader path)."""

    def __init__(self, base: InMemoryDataset):
        self.base = base
        self.targets = base.targets
        self.mean, self.std = base.mean, base.std
        self.input_shape = base.input_shape

    def raw_fill(self):
        return self.base.raw_fill()

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return self.base[i]


# ------------------------------------------------------------------------------------------------
# order, coverage, resume


@pytest.mark.parametrize("batch_size, expected_len", [(5, 5), (23, 1), (1, 23), (64, 1)])
def test_every_sample_once_per_epoch(batch_size, expected_len):
    loader = TensorLoader(index_set(), batch_size=batch_size, seed=3)
    assert len(loader) == expected_len
    for epoch in range(3):
        loader.set_epoch(epoch)
        got = seen(loader)
        assert sorted(got) == list(range(23))
        assert got == loader.indices().tolist() == epoch_order(23, 3, epoch).tolist()
        batches = list(loader)
        assert len(batches) == expected_len and all(y.dtype == torch.int64 for _, y in batches)
        assert all(torch.equal(y, x.flatten().long() % 5) for x, y in batches)  # labels travel with inputs


def test_order_is_a_pure_function_of_seed_and_epoch():
    a = TensorLoader(index_set(), 4, seed=11)
    b = TensorLoader(index_set(), 4, seed=11)
    a.set_epoch(2)
    b.set_epoch(0)
    list(b)
    b.set_epoch(2)  # history does not matter
    assert seen(a) == seen(b)
    gen = torch.Generator().manual_seed(11 * 1_000_003 + 2)
    assert seen(a) == torch.randperm(23, generator=gen).tolist()
    a.set_epoch(3)
    assert seen(a) != seen(b)
    assert seen(TensorLoader(index_set(), 4, seed=12)) != seen(TensorLoader(index_set(), 4, seed=11))


def test_no_shuffle_and_drop_last():
    loader = TensorLoader(index_set(), 5, shuffle=False)
    assert seen(loader) == list(range(23))
    x0, _ = next(iter(loader))
    assert x0.data_ptr() == loader.x.data_ptr()  # unshuffled batches are views, not copies
    dl = TensorLoader(index_set(), 5, seed=1, drop_last=True)
    assert len(dl) == 4 and [len(y) for _, y in dl] == [5, 5, 5, 5]
    assert seen(dl) == epoch_order(23, 1, 0).tolist()[:20]


@pytest.mark.parametrize("start", [0, 1, 3, 4])
def test_iter_from_equals_tail_of_full_epoch(start):
    full = TensorLoader(images(), 6, seed=5, augment="crop_flip")
    full.set_epoch(4)
    ref = list(full)
    fresh = TensorLoader(images(), 6, seed=5, augment="crop_flip")
    fresh.set_epoch(4)
    tail = list(fresh.iter_from(start))
    assert len(tail) == len(ref) - start
    for (xa, ya), (xb, yb) in zip(ref[start:], tail):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_iter_from_out_of_range():
    loader = TensorLoader(index_set(), 5)
    with pytest.raises(NetgrowValueError, match=r"iter_from\(6\); use a batch index in \[0, 5\]"):
        loader.iter_from(6)
    with pytest.raises(NetgrowValueError, match=r"iter_from\(-1\)"):
        loader.iter_from(-1)


# ------------------------------------------------------------------------------------------------
# DDP sharding


@pytest.mark.parametrize(
    "n, world, drop_last, per_rank", [(24, 3, False, 8), (23, 3, False, 8), (23, 3, True, 7), (5, 4, False, 2)]
)
def test_ddp_shards_disjoint_equal_and_covering(n, world, drop_last, per_rank):
    ds = index_set(n)
    shards = []
    for rank in range(world):
        # batch_size 1: drop_last then only drops the samples that do not divide over the ranks
        loader = TensorLoader(ds, 1, seed=9, rank=rank, world_size=world, drop_last=drop_last)
        loader.set_epoch(1)
        shards.append(loader.indices().tolist())
        assert seen(loader) == shards[-1] and len(loader) == per_rank
    assert all(len(s) == per_rank for s in shards)
    order = epoch_order(n, 9, 1).tolist()
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(set(flat)) == len(flat) == per_rank * world  # disjoint, tail dropped
        assert set(flat) == set(order[: per_rank * world])
    else:
        assert set(flat) == set(range(n))  # covering
        padded = order + (order * world)[: per_rank * world - n]  # the padding repeats the head
        assert sorted(flat) == sorted(padded)
        if n % world == 0:
            assert len(set(flat)) == n  # disjoint when no padding is needed


def test_ddp_ranks_get_different_augmentation_seeds():
    ds = images(8)
    a = TensorLoader(ds, 4, shuffle=False, seed=0, rank=0, world_size=2, augment="crop_flip").augment
    assert a is not None
    from netgrow.data.loader import _Schedule

    s0 = _Schedule(8, 4, False, 0, False, 0, 2)
    s1 = _Schedule(8, 4, False, 0, False, 1, 2)
    assert s0.augment_generator(0).initial_seed() != s1.augment_generator(0).initial_seed()


# ------------------------------------------------------------------------------------------------
# augmentation


def test_flip_of_a_known_image():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    x = torch.cat([x] * 8)  # 16 images, some flipped, some not
    aug = CropFlip(padding=0, crop=False, flip=True)
    out = aug(x, torch.Generator().manual_seed(1))
    _, _, flip = aug.draw(16, torch.Generator().manual_seed(1))
    assert 0 < int(flip.sum()) < 16
    for i in range(16):
        expect = x[i].flip(-1) if flip[i] else x[i]
        assert torch.equal(out[i], expect)
    assert out[flip][0, 0, 0].tolist() in ([3.0, 2.0, 1.0, 0.0], [15.0, 14.0, 13.0, 12.0])  # a mirrored first row


def test_crop_offsets_within_padding_and_fill():
    b, c, h, w, p = 32, 2, 5, 6, 2
    x = torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w) + 1.0
    aug = CropFlip(padding=p, flip=False, fill=(-7.0, -9.0))
    out = aug(x, torch.Generator().manual_seed(4))
    oy, ox, flip = aug.draw(b, torch.Generator().manual_seed(4))
    assert not flip.any() and int(oy.min()) >= 0 and int(oy.max()) <= 2 * p and int(ox.max()) <= 2 * p
    assert len(set(oy.tolist())) > 1 and len(set(ox.tolist())) > 1
    fill = torch.tensor([-7.0, -9.0]).view(c, 1, 1)
    for i in range(b):
        padded = fill.expand(c, h + 2 * p, w + 2 * p).clone()
        padded[:, p : p + h, p : p + w] = x[i]
        assert torch.equal(out[i], padded[:, oy[i] : oy[i] + h, ox[i] : ox[i] + w])
    assert (out == -7.0).any() and (out == -9.0).any()


def test_crop_flip_combined_matches_naive():
    x = torch.randn(16, 3, 8, 8)
    aug = CropFlip(padding=3)
    out = aug(x, torch.Generator().manual_seed(0))
    oy, ox, flip = aug.draw(16, torch.Generator().manual_seed(0))
    for i in range(16):
        padded = torch.nn.functional.pad(x[i], (3, 3, 3, 3))
        crop = padded[:, oy[i] : oy[i] + 8, ox[i] : ox[i] + 8]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)


def test_crop_flip_string_pads_with_black_in_normalised_units():
    ds = images(16, size=8, channels=1)
    ds.data.clamp_(min=1)  # no black pixel inside the images, so any black one comes from padding
    aug = resolve_augment("crop_flip", ds.input_shape, ds.raw_fill())
    assert isinstance(aug, CropFlip) and aug.padding == 1 and aug.flip and aug.crop
    assert [default_padding(s) for s in (64, 32, 28, 8)] == [4, 4, 2, 1]
    black = -ds.mean[0] / ds.std[0]
    loader = TensorLoader(ds, 16, shuffle=False, augment="crop")
    out, _ = next(iter(loader))
    raw = ds.tensors()[0]
    values = set(out.flatten().tolist()) - set(raw.flatten().tolist())
    assert values and all(abs(v - black) < 1e-6 for v in values)  # only padded pixels are new


def test_augmentation_is_exactly_reproducible_and_varies():
    def run(epoch):
        loader = TensorLoader(images(), 5, seed=2, augment="crop_flip")
        loader.set_epoch(epoch)
        return [x for x, _ in loader]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))
    plain = TensorLoader(images(), 5, seed=2)
    assert not all(torch.equal(u, v) for u, v in zip(a, [x for x, _ in plain]))


def test_callable_augment_gets_the_seeded_generator():
    calls = []

    def aug(x, gen):
        calls.append(gen.initial_seed())
        return x + 1

    loader = TensorLoader(index_set(), 10, shuffle=False, augment=aug, seed=7)
    loader.set_epoch(2)
    out = seen(loader)
    assert out == [i + 1 for i in range(23)]
    assert calls == [mix_seed(7, 2, b, 0, 0xA06) for b in range(3)]


def test_augment_errors():
    with pytest.raises(NetgrowValueError, match=r"augment='rotate'; use None or one of"):
        TensorLoader(images(), 4, augment="rotate")
    sig = InMemoryDataset(torch.randn(6, 1, 40), torch.zeros(6, dtype=torch.long), ["a"], "sig")
    with pytest.raises(NetgrowValueError, match=r"needs images \(C, H, W\), the data are \(1, 40\)"):
        TensorLoader(sig, 4, augment="crop_flip")
    with pytest.raises(NetgrowTypeError, match="augment=3"):
        TensorLoader(images(), 4, augment=3)
    with pytest.raises(NetgrowValueError, match="expects image batches"):
        CropFlip()(torch.zeros(2, 3, 4), torch.Generator())
    with pytest.raises(NetgrowValueError, match="padding=-1"):
        CropFlip(padding=-1)


# ------------------------------------------------------------------------------------------------
# data on the device, errors, DataLoader path


def test_uint8_kept_raw_gives_identical_batches():
    a = TensorLoader(images(), 6, seed=1, augment="crop_flip", keep_raw=True)
    b = TensorLoader(images(), 6, seed=1, augment="crop_flip", keep_raw=False)
    assert a.x.dtype == torch.uint8 and b.x.dtype == torch.float32
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
    ds = images()
    xs, _ = ds.tensors()
    first = next(iter(TensorLoader(ds, 20, shuffle=False)))[0]
    assert torch.equal(first, xs) and torch.equal(ds[3][0], xs[3])


def test_tuple_and_tensordataset_inputs():
    x, y = torch.randn(10, 3), torch.arange(10)
    a = TensorLoader((x, y), 4, seed=0)
    b = TensorLoader(torch.utils.data.TensorDataset(x, y), 4, seed=0)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(xa, x[ya])


def test_loader_errors():
    with pytest.raises(NetgrowValueError, match=r"batch_size=0; use an int >= 1"):
        TensorLoader(index_set(), 0)
    with pytest.raises(DataError, match="the data set is empty"):
        TensorLoader((torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), 4)
    with pytest.raises(DataError, match=r"batch_size=30 is larger than the 23 samples per rank.*drop_last=False"):
        TensorLoader(index_set(), 30, drop_last=True)
    with pytest.raises(DataError, match=r"batch_size=12 is larger than the 11 samples per rank"):
        TensorLoader(index_set(), 12, drop_last=True, world_size=2, rank=1)
    with pytest.raises(NetgrowValueError, match=r"rank=2; use an int in \[0, 2\)"):
        TensorLoader(index_set(), 4, rank=2, world_size=2)
    with pytest.raises(NetgrowValueError, match=r"world_size=0"):
        TensorLoader(index_set(), 4, world_size=0)
    with pytest.raises(DataError, match=r"3 samples cannot be split over world_size=4"):
        TensorLoader(index_set(3), 1, world_size=4, drop_last=True)
    with pytest.raises(DataError, match="3 inputs but 2 labels"):
        TensorLoader((torch.zeros(3, 2), torch.zeros(2, dtype=torch.long)), 1)
    with pytest.raises(NetgrowTypeError, match="not an in-memory data set; use netgrow.data.make_loader"):
        TensorLoader(Plain(index_set()), 4)
    # a batch larger than the data without drop_last is one short batch, not an error
    assert [len(y) for _, y in TensorLoader(index_set(), 30)] == [23]


@pytest.mark.parametrize("world, rank", [(1, 0), (2, 1)])
def test_make_loader_dataloader_path_matches_tensor_loader(world, rank):
    ds = images(21)
    fast = make_loader(ds, 4, seed=6, augment="crop_flip", rank=rank, world_size=world)
    slow = make_loader(Plain(ds), 4, seed=6, augment="crop_flip", rank=rank, world_size=world)
    assert isinstance(fast, TensorLoader) and isinstance(slow, DatasetLoader)
    assert isinstance(slow.loader, torch.utils.data.DataLoader)
    for epoch in (0, 3):
        fast.set_epoch(epoch)
        slow.set_epoch(epoch)
        a, b = list(fast), list(slow)
        assert len(a) == len(b) == len(fast) == len(slow)
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)
        tail = list(slow.iter_from(2))
        assert len(tail) == len(b) - 2 and all(torch.equal(u[0], v[0]) for u, v in zip(b[2:], tail))


def test_nested_subset_through_loader_keeps_labels_in_range():
    ds = images(40)
    stages = nested_subsets(ds, [2, 4], seed=0)
    for s in stages:
        ys = torch.cat([y for _, y in make_loader(s, 7, seed=0)])
        assert sorted(ys.tolist()) == sorted(s.targets.tolist())
        assert ys.min().item() == 0 and ys.max().item() == s.num_classes - 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():  # pragma: no cover - CPU machines skip
    cpu = TensorLoader(images(), 5, seed=1, augment="crop_flip")
    gpu = TensorLoader(images(), 5, seed=1, augment="crop_flip", device="cuda")
    for (xa, ya), (xb, yb) in zip(cpu, gpu):
        assert xb.is_cuda and torch.allclose(xa, xb.cpu()) and torch.equal(ya, yb.cpu())


def test_make_loader_rejects_non_datasets():
    with pytest.raises(NetgrowTypeError, match=r"make_loader: int is not a data set"):
        make_loader(5, 4)
    with pytest.raises(NetgrowValueError, match=r"batch_size=2.5"):
        make_loader(Plain(index_set()), 2.5)
