"""Data sets: on-disk formats written here in tmp_path and read back, errors, nested class subsets."""

from __future__ import annotations

import gzip
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from netgrow.data import InMemoryDataset, class_order, list_datasets, load, nested_subsets
from netgrow.data.cifar import load_cifar10, load_cifar100
from netgrow.data.idx import load_fashion_mnist, load_mnist, read_idx
from netgrow.data.imagefolder import ImageFileDataset, load_imagefolder
from netgrow.data.subsets import ClassSubset, resolve_schedule
from netgrow.data.tinyimagenet import load_tinyimagenet
from netgrow.errors import DataError, NetgrowTypeError, NetgrowValueError

# ------------------------------------------------------------------------------------------------
# writers for the on-disk formats


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    payload = header + arr.tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


def make_idx_dir(root: Path, n_train: int = 12, n_test: int = 6, gz: bool = True, size: int = 5) -> dict:
    rng = np.random.default_rng(0)
    data = {
        "train_x": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_y": np.arange(n_train, dtype=np.uint8) % 10,
        "test_x": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_y": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(root / f"train-images-idx3-ubyte{ext}", data["train_x"], gz)
    write_idx(root / f"train-labels-idx1-ubyte{ext}", data["train_y"], gz)
    write_idx(root / f"t10k-images-idx3-ubyte{ext}", data["test_x"], gz)
    write_idx(root / f"t10k-labels-idx1-ubyte{ext}", data["test_y"], gz)
    return data


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar10(root: Path, per_batch: int = 4) -> dict:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = []
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches.append((data, labels))
        with open(d / fname, "wb") as f:
            pickle.dump(
                {b"batch_label": fname.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"{i}_{j}.png".encode() for j in range(per_batch)]},
                f, protocol=2,
            )  # fmt: skip
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": per_batch}, f)
    return {"dir": d, "batches": batches}


def make_cifar100(root: Path, n_train: int = 10, n_test: int = 5) -> dict:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(2)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [f // 5 for f in fine]
        out[name] = (data, fine, coarse)
        with open(d / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": fine, b"coarse_labels": coarse,
                         b"filenames": [b"x.png"] * n, b"batch_label": name.encode()}, f)  # fmt: skip
    with open(d / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, f)  # fmt: skip
    return out


def save_png(path: Path, arr: np.ndarray) -> None:
    """Save H×W×3 or H×W uint8 as PNG (lossless) whatever the file extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def make_tinyimagenet(root: Path, size: int = 8) -> dict:
    d = root / "tiny-imagenet-200"
    wnids = ["n03", "n01", "n02"]  # deliberately unsorted: labels follow the sorted order
    (d).mkdir(parents=True)
    (d / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (d / "words.txt").write_text("n01\tgoldfish\nn02\tsalamander, eft\nn03\tbullfrog\nn99\tunused\n")
    rng = np.random.default_rng(3)
    train = {}
    for w in wnids:
        imgs = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2)]
        for j, im in enumerate(imgs):
            save_png(d / "train" / w / "images" / f"{w}_{j}.JPEG", im)
        (d / "train" / w / f"{w}_boxes.txt").write_text("")
        train[w] = imgs
    val = []
    lines = []
    for j, w in enumerate(["n02", "n01", "n03", "n02"]):
        im = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        save_png(d / "val" / "images" / f"val_{j}.JPEG", im)
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t{size}\t{size}")
        val.append((w, im))
    (d / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"dir": d, "train": train, "val": val}


# ------------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip_gz_and_raw(tmp_path, gz):
    ref = make_idx_dir(tmp_path / "f", gz=gz)
    train, test = load_fashion_mnist(root=tmp_path / "f")
    assert (len(train), len(test)) == (12, 6)
    assert train.data.dtype == torch.uint8 and tuple(train.data.shape) == (12, 1, 5, 5)
    assert train.input_shape == (1, 5, 5) and train.num_classes == 10 and train.name == "fashion_mnist"
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert torch.equal(train.data[:, 0], torch.from_numpy(ref["train_x"]))
    assert train.targets.dtype == torch.int64
    assert train.targets.tolist() == ref["train_y"].tolist()
    assert test.targets.tolist() == ref["test_y"].tolist()
    # stats come from the train split and are shared by the test split
    px = ref["train_x"].astype(np.float64) / 255
    assert train.mean[0] == pytest.approx(px.mean(), abs=1e-12)
    assert train.std[0] == pytest.approx(px.std(), abs=1e-12)
    assert test.mean == train.mean and test.std == train.std
    x, y = train[3]
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, 5, 5) and y == int(ref["train_y"][3])
    expect = (ref["train_x"][3].astype(np.float32) / 255 - np.float32(train.mean[0])) / np.float32(train.std[0])
    np.testing.assert_allclose(x[0].numpy(), expect, rtol=1e-6, atol=1e-6)
    xs, ys = train.tensors()
    assert xs.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert xs.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert torch.equal(xs[3], x) and torch.equal(ys, train.targets)
    assert train[-1][1] == int(ref["train_y"][-1])
    with pytest.raises(IndexError):
        train[12]


def test_mnist_root_env_and_dotted_names(tmp_path, monkeypatch):
    d = tmp_path / "mnist"
    ref = make_idx_dir(d, gz=False)
    (d / "train-images-idx3-ubyte").rename(d / "train-images.idx3-ubyte")  # the other common spelling
    monkeypatch.setenv("NETGROW_MNIST", str(d))
    train, test = load("mnist")
    assert train.name == "mnist" and train.classes == [str(i) for i in range(10)]
    assert torch.equal(train.data[:, 0], torch.from_numpy(ref["train_x"]))
    monkeypatch.delenv("NETGROW_MNIST")
    monkeypatch.setenv("NETGROW_DATA_ROOT", str(tmp_path))  # $NETGROW_DATA_ROOT/mnist
    assert len(load_mnist()[1]) == 6


def test_fashion_env_var_overrides_default(tmp_path, monkeypatch):
    make_idx_dir(tmp_path / "fm", n_train=7, n_test=3)
    monkeypatch.setenv("NETGROW_FASHION_MNIST", str(tmp_path / "fm"))
    train, test = load("fashion-mnist")  # alias spelling
    assert (len(train), len(test)) == (7, 3)


def test_fashion_missing_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("NETGROW_FASHION_MNIST", raising=False)
    with pytest.raises(DataError) as e:
        load_fashion_mnist(root=tmp_path)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "NETGROW_FASHION_MNIST" in msg and "root=" in msg


def test_mnist_missing_one_file_names_it(tmp_path):
    make_idx_dir(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*NETGROW_MNIST"):
        load_mnist(root=tmp_path)


def test_idx_bad_magic(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    buf = bytearray(p.read_bytes())
    buf[0:4] = b"PK\x03\x04"
    p.write_bytes(bytes(buf))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte has a bad magic number 0x504b0304"):
        load_fashion_mnist(root=tmp_path)


def test_idx_wrong_ndim_in_magic(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros((12, 1), dtype=np.uint8))  # 2-d labels
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte has a bad magic number .*2 dimensions, expected 1"):
        load_fashion_mnist(root=tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    make_idx_dir(tmp_path, gz=gz)
    p = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    p.write_bytes(p.read_bytes()[:-20])
    pattern = r"corrupt or truncated gzip" if gz else r"is truncated: \d+ bytes, header \[12, 5, 5\] implies 316"
    with pytest.raises(DataError, match=pattern) as e:
        load_fashion_mnist(root=tmp_path)
    assert str(p) in str(e.value)


def test_idx_trailing_bytes_and_tiny_file(tmp_path):
    p = tmp_path / "x-idx1-ubyte"
    write_idx(p, np.arange(4))
    p.write_bytes(p.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="longer than its header says"):
        read_idx(p)
    p.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated: 2 bytes"):
        read_idx(p)


def test_idx_count_mismatch_and_label_range(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11))
    with pytest.raises(DataError, match=r"has 12 images but .*train-labels-idx1-ubyte has 11 labels"):
        load_fashion_mnist(root=tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(12, 10))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte has labels in \[10, 10\], expected \[0, 10\)"):
        load_fashion_mnist(root=tmp_path)


# ------------------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_roundtrip(tmp_path):
    ref = make_cifar10(tmp_path)
    train, test = load("cifar10", root=tmp_path)  # parent of cifar-10-batches-py
    assert (len(train), len(test)) == (20, 4)
    assert train.input_shape == (3, 32, 32) and train.data.dtype == torch.uint8
    assert train.classes == CIFAR10_NAMES and train.num_classes == 10
    data2, labels2 = ref["batches"][1]
    # sample 5 is the second batch's second image; CIFAR rows are R plane, G plane, B plane
    assert torch.equal(train.data[5], torch.from_numpy(data2[1].reshape(3, 32, 32)))
    assert train.data[5, 1, 0, 0].item() == data2[1][1024] and train.data[5, 2, 31, 31].item() == data2[1][3071]
    assert train.targets[4:8].tolist() == labels2
    assert test.targets.tolist() == ref["batches"][5][1]
    all_px = np.concatenate([b[0] for b in ref["batches"][:5]]).reshape(-1, 3, 1024).astype(np.float64) / 255
    np.testing.assert_allclose(train.mean, all_px.mean(axis=(0, 2)), atol=1e-12)
    np.testing.assert_allclose(train.std, all_px.std(axis=(0, 2)), atol=1e-12)
    # the batches directory itself works as root too
    assert len(load_cifar10(root=ref["dir"])[0]) == 20


def test_cifar100_fine_and_coarse(tmp_path, monkeypatch):
    ref = make_cifar100(tmp_path)
    monkeypatch.setenv("NETGROW_DATA_ROOT", str(tmp_path))
    train, test = load("cifar100")
    assert train.num_classes == 100 and train.classes[7] == "fine7" and train.name == "cifar100"
    assert train.targets.tolist() == ref["train"][1] and test.targets.tolist() == ref["test"][1]
    assert torch.equal(test.data[2], torch.from_numpy(ref["test"][0][2].reshape(3, 32, 32)))
    coarse_train, _ = load_cifar100(label="coarse")
    assert coarse_train.num_classes == 20 and coarse_train.targets.tolist() == ref["train"][2]
    with pytest.raises(NetgrowValueError, match="label='medium'"):
        load_cifar100(label="medium")


def test_cifar_missing_dir_and_batch(tmp_path, monkeypatch):
    monkeypatch.delenv("NETGROW_DATA_ROOT", raising=False)
    pattern = r"CIFAR-10 not found: no cifar-10-batches-py/batches.meta .*root=DIR.*NETGROW_DATA_ROOT"
    with pytest.raises(DataError, match=pattern):
        load_cifar10(root=tmp_path)
    with pytest.raises(DataError, match=r"CIFAR-100 not found.*pass root=\.\.\."):
        load_cifar100()  # no root, no env var: says to pass root
    ref = make_cifar10(tmp_path)
    (ref["dir"] / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"CIFAR-10 file .*data_batch_3 is missing"):
        load_cifar10(root=tmp_path)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"this is not a pickle", r"test_batch is not a readable CIFAR pickle"),
        (None, r"test_batch is not a readable CIFAR pickle \((EOFError|UnpicklingError)"),  # truncated
    ],
)
def test_cifar_corrupt_batch(tmp_path, content, pattern):
    ref = make_cifar10(tmp_path)
    p = ref["dir"] / "test_batch"
    p.write_bytes(content if content is not None else p.read_bytes()[:200])
    with pytest.raises(DataError, match=pattern):
        load_cifar10(root=tmp_path)


def test_cifar_rejects_code_in_pickle(tmp_path):
    ref = make_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(ref["dir"] / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": Evil()}, f)
    with pytest.raises(DataError, match=r"global builtins.print is not allowed"):
        load_cifar10(root=tmp_path)


def test_cifar_bad_shapes_and_labels(tmp_path):
    ref = make_cifar10(tmp_path)
    with open(ref["dir"] / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, f)
    with pytest.raises(DataError, match=r"data_batch_2: 'data' is uint8 \(4, 3000\), expected uint8 \(N, 3072\)"):
        load_cifar10(root=tmp_path)
    with open(ref["dir"] / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match=r"data_batch_2: 4 images but 3 labels"):
        load_cifar10(root=tmp_path)
    with open(ref["dir"] / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 12]}, f)
    with pytest.raises(DataError, match=r"data_batch_2: labels in \[0, 12\], expected \[0, 10\)"):
        load_cifar10(root=tmp_path)
    with open(ref["dir"] / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), np.uint8)}, f)
    with pytest.raises(DataError, match=r"data_batch_2 has no 'labels' entry"):
        load_cifar10(root=tmp_path)


# ------------------------------------------------------------------------------------------------
# TinyImageNet and ImageFolder


def test_tinyimagenet_layout(tmp_path):
    ref = make_tinyimagenet(tmp_path)
    cache = tmp_path / "cache"
    train, test = load("tinyimagenet", root=tmp_path, size=(8, 8), cache_dir=cache, progress=False)
    assert (len(train), len(test)) == (6, 4)
    assert train.input_shape == (3, 8, 8) and train.data.dtype == torch.uint8
    assert train.wnids == ["n01", "n02", "n03"]
    assert train.classes == ["goldfish", "salamander, eft", "bullfrog"]
    assert train.targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(train.data[2], torch.from_numpy(ref["train"]["n02"][0]).permute(2, 0, 1))
    assert test.targets.tolist() == [1, 0, 2, 1]
    assert torch.equal(test.data[1], torch.from_numpy(ref["val"][1][1]).permute(2, 0, 1))
    # the second load comes from the .npz cache and is identical
    assert len(list(cache.glob("tinyimagenet-*.npz"))) == 1
    train2, test2 = load_tinyimagenet(root=tmp_path / "tiny-imagenet-200", size=(8, 8), cache_dir=cache)
    assert torch.equal(train2.data, train.data) and torch.equal(test2.targets, test.targets)


def test_tinyimagenet_grey_jpeg_and_resize(tmp_path):
    ref = make_tinyimagenet(tmp_path)
    img = ref["dir"] / "train" / "n01" / "images" / "n01_0.JPEG"
    Image.fromarray(np.full((16, 16), 200, np.uint8), mode="L").save(img, format="JPEG", quality=95)
    train, _ = load_tinyimagenet(root=tmp_path, size=(8, 8), cache=False, progress=False)
    grey = train.data[0].to(torch.int64)
    assert tuple(grey.shape) == (3, 8, 8)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])  # L -> RGB copies the channel
    assert (grey - 200).abs().max().item() <= 3  # JPEG of a flat image is nearly exact


def test_tinyimagenet_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("NETGROW_DATA_ROOT", raising=False)
    with pytest.raises(DataError, match=r"TinyImageNet not found: no tiny-imagenet-200/wnids.txt .*NETGROW_DATA_ROOT"):
        load_tinyimagenet(root=tmp_path)
    ref = make_tinyimagenet(tmp_path)
    ann = ref["dir"] / "val" / "val_annotations.txt"
    text = ann.read_text()
    ann.write_text(text.replace("n01", "n77", 1))
    with pytest.raises(DataError, match=r"val_annotations.txt line 2: wnid 'n77' is not in wnids.txt"):
        load_tinyimagenet(root=tmp_path, cache=False)
    ann.unlink()
    with pytest.raises(DataError, match=r"val_annotations.txt is missing"):
        load_tinyimagenet(root=tmp_path, cache=False)
    ann.write_text(text)
    (ref["dir"] / "val" / "images" / "val_3.JPEG").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(DataError, match=r"cannot decode image .*val_3.JPEG"):
        load_tinyimagenet(root=tmp_path, size=(8, 8), cache=False, progress=False)


def make_imagefolder(root: Path, classes=("cat", "dog", "eel"), per_class=5, size=4, rgb=True) -> dict:
    rng = np.random.default_rng(4)
    out = {}
    for c in classes:
        for j in range(per_class):
            shape = (size, size, 3) if rgb else (size, size)
            im = rng.integers(0, 256, shape, dtype=np.uint8)
            save_png(root / c / f"{j:02d}.png", im)
            out[(c, j)] = im
    return out


def test_imagefolder_seeded_split(tmp_path):
    ref = make_imagefolder(tmp_path / "tree")
    (tmp_path / "tree" / "notes.txt").write_text("ignored")
    train, test = load("imagefolder", root=tmp_path / "tree", progress=False)
    assert train.classes == ["cat", "dog", "eel"] and train.input_shape == (3, 4, 4)
    assert (len(train), len(test)) == (12, 3)  # 1 of 5 per class goes to test (stratified)
    assert torch.bincount(test.targets).tolist() == [1, 1, 1]
    # every image appears exactly once across the two splits, with the right label
    seen = {}
    for ds in (train, test):
        for i in range(len(ds)):
            seen[ds.data[i].numpy().tobytes()] = ds.classes[int(ds.targets[i])]
    assert seen == {np.ascontiguousarray(im.transpose(2, 0, 1)).tobytes(): c for (c, _), im in ref.items()}
    again = load_imagefolder(tmp_path / "tree", progress=False)[1]
    other = load_imagefolder(tmp_path / "tree", seed=1, progress=False)[1]
    assert torch.equal(again.data, test.data)
    assert not torch.equal(other.data, test.data)


def test_imagefolder_train_val_grey_and_lazy(tmp_path):
    make_imagefolder(tmp_path / "train", classes=("a", "b"), per_class=3, rgb=False)
    make_imagefolder(tmp_path / "val", classes=("b",), per_class=2, rgb=False)
    train, test = load_imagefolder(tmp_path, mode="L", progress=False)
    assert train.input_shape == (1, 4, 4) and (len(train), len(test)) == (6, 2)
    assert test.targets.tolist() == [1, 1] and test.classes == ["a", "b"]
    lazy_train, lazy_test = load_imagefolder(tmp_path, mode="L", in_memory=False, progress=False)
    assert isinstance(lazy_train, ImageFileDataset) and lazy_train.input_shape == (1, 4, 4)
    assert lazy_train.mean == pytest.approx(train.mean) and lazy_train.std == pytest.approx(train.std)
    for i in range(len(train)):
        xa, ya = train[i]
        xb, yb = lazy_train[i]
        assert ya == yb and torch.allclose(xa, xb, atol=1e-6)
    from netgrow.data import DatasetLoader, make_loader

    fast = make_loader(train, 4, seed=1, augment="crop_flip")
    slow = make_loader(lazy_train, 4, seed=1, augment="crop_flip")
    assert isinstance(slow, DatasetLoader)
    for (xa, ya), (xb, yb) in zip(fast, slow, strict=True):
        assert torch.equal(ya, yb) and torch.allclose(xa, xb, atol=1e-6)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(NetgrowValueError, match=r"load\('imagefolder'\) needs root=DIR"):
        load("imagefolder")
    with pytest.raises(DataError, match="does not exist"):
        load_imagefolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-directories with images"):
        load_imagefolder(tmp_path / "empty")
    make_imagefolder(tmp_path / "mixed", classes=("a",), per_class=2, size=4)
    save_png(tmp_path / "mixed" / "a" / "zz.png", np.zeros((6, 6, 3), np.uint8))
    with pytest.raises(DataError, match=r"zz.png is 6×6 but .* is 4×4; pass size=\(H, W\)"):
        load_imagefolder(tmp_path / "mixed", progress=False)
    train, test = load_imagefolder(tmp_path / "mixed", size=3, progress=False)  # resizing fixes it
    assert train.input_shape == (3, 3, 3) and len(train) + len(test) == 3
    make_imagefolder(tmp_path / "tv" / "train", classes=("a",), per_class=2)
    make_imagefolder(tmp_path / "tv" / "val", classes=("zebra",), per_class=1)
    with pytest.raises(DataError, match=r"zebra is a class that the training folder does not have"):
        load_imagefolder(tmp_path / "tv")


# ------------------------------------------------------------------------------------------------
# generated / bundled data sets and the registry


def test_mnist1d_offline_shapes_and_seed(monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("mnist1d tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    train, test = load("mnist1d")
    assert (np.random.rand(), random.random()) == (expected_np, expected_py)  # global RNGs untouched
    assert (len(train), len(test)) == (4000, 1000)
    assert train.input_shape == (1, 40) and train.data.dtype == torch.float32 and train.num_classes == 10
    assert set(train.targets.tolist()) == set(range(10))
    x, y = train[0]
    assert tuple(x.shape) == (1, 40) and isinstance(y, int)
    xs, _ = train.tensors()
    assert abs(xs.mean().item()) < 1e-5 and xs.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    a, _ = load("mnist1d", num_samples=200, seed=7)
    b, _ = load("mnist1d", num_samples=200, seed=7)
    c, _ = load("mnist1d", num_samples=200, seed=8)
    assert len(a) == 160 and torch.equal(a.data, b.data) and not torch.equal(a.data, c.data)
    with pytest.raises(NetgrowValueError, match=r"unknown option\(s\) \['colour'\]"):
        load("mnist1d", colour=True)


def test_digits_split():
    train, test = load("digits")
    assert len(train) + len(test) == 1797 and train.input_shape == (1, 8, 8) and train.num_classes == 10
    assert len(test) == pytest.approx(0.2 * 1797, abs=10)
    assert train.data.max().item() == 16.0 and train.data.min().item() == 0.0
    from sklearn.datasets import load_digits as sk

    bunch = sk()
    all_imgs = {bunch.images[i].astype(np.float32).tobytes(): int(bunch.target[i]) for i in range(1797)}
    got = [(ds.data[i, 0].numpy().tobytes(), int(ds.targets[i])) for ds in (train, test) for i in range(len(ds))]
    assert len({g for g, _ in got}) == len(all_imgs)  # disjoint, covering
    assert all(all_imgs[g] == y for g, y in got)
    other, _ = load("digits", seed=1)
    assert not torch.equal(other.data, train.data)


def test_registry():
    names = list_datasets()
    assert names == sorted(names)
    expected = {"fashion_mnist", "mnist", "cifar10", "cifar100", "tinyimagenet", "imagefolder", "mnist1d", "digits"}
    assert expected <= set(names)
    with pytest.raises(NetgrowValueError, match=r"unknown data set 'cifar1000' \(did you mean 'cifar100'\?\)"):
        load("cifar1000")


def test_in_memory_dataset_validation():
    with pytest.raises(DataError, match=r"toy: 3 samples but 2 labels"):
        InMemoryDataset(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1]), ["a", "b"], "toy")
    with pytest.raises(DataError, match=r"toy: labels must lie in \[0, 2\), found \[0, 2\]"):
        InMemoryDataset(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]), ["a", "b"], "toy")
    with pytest.raises(NetgrowTypeError, match="uint8 images or floating point, got torch.int32"):
        InMemoryDataset(torch.zeros(3, 1, 2, 2, dtype=torch.int32), torch.tensor([0, 1, 1]), ["a", "b"], "toy")
    with pytest.raises(DataError, match="N×C×H×W or N×C×L"):
        InMemoryDataset(torch.zeros(3, 4), torch.tensor([0, 1, 1]), ["a", "b"], "toy")
    const = InMemoryDataset(torch.full((3, 1, 2, 2), 7, dtype=torch.uint8), torch.tensor([0, 1, 1]), ["a", "b"], "toy")
    assert const.std == (1.0,) and const.mean[0] == pytest.approx(7 / 255)


# ------------------------------------------------------------------------------------------------
# nested class subsets


def labelled(n_per_class: int = 3, num_classes: int = 10) -> InMemoryDataset:
    n = n_per_class * num_classes
    y = torch.arange(n) % num_classes
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1)  # x encodes the sample index
    return InMemoryDataset(x, y, [f"c{i}" for i in range(num_classes)], "toy", mean=(0.0,), std=(1.0,))


def test_nested_subsets_nested_stable_counts():
    ds = labelled()
    stages = nested_subsets(ds, [5, 7, 10], seed=0)
    order = class_order(10, seed=0)
    assert sorted(order) == list(range(10)) and order != list(range(10))  # seed 0 still permutes
    assert [s.num_classes for s in stages] == [5, 7, 10]
    assert [len(s) for s in stages] == [15, 21, 30]
    for k, s in zip([5, 7, 10], stages):
        assert s.class_order == order[:k]
        assert s.classes == [f"c{c}" for c in order[:k]]
        assert s.targets.min().item() >= 0 and s.targets.max().item() == k - 1
        assert torch.bincount(s.targets, minlength=k).tolist() == [3] * k
        assert s.mean == ds.mean and s.std == ds.std  # parent statistics are kept
        # every sample keeps its image and gets label rank(original label)
        for i in range(len(s)):
            x, y = s[i]
            orig = int(x.item())
            assert s.indices[i].item() == orig and order[y] == int(ds.targets[orig])
    for a, b in zip(stages, stages[1:]):
        assert set(a.indices.tolist()) < set(b.indices.tolist())  # D1 ⊂ D2 ⊂ D3
        assert b.classes[: a.num_classes] == a.classes  # old classes keep their label index
        common = {int(i): int(t) for i, t in zip(a.indices, a.targets)}
        assert all(common[int(i)] == int(t) for i, t in zip(b.indices, b.targets) if int(i) in common)
    assert stages[-1].name == "toy[10/10]"


def test_nested_subsets_same_order_on_train_and_test_and_fractions():
    train, test = labelled(4), labelled(2)
    tr = nested_subsets(train, [0.5, 0.7, 1.0], seed=3)
    te = nested_subsets(test, [0.5, 0.7, 1.0], seed=3)
    assert [s.num_classes for s in tr] == [5, 7, 10]
    assert [s.class_order for s in tr] == [s.class_order for s in te]
    assert [len(s) for s in te] == [10, 14, 20]
    other = nested_subsets(train, [5], seed=4)[0]
    assert other.class_order != tr[0].class_order
    ident = nested_subsets(train, [3, 10], shuffle_classes=False)
    assert ident[0].class_order == [0, 1, 2] and torch.equal(ident[1].targets, train.targets)


def test_nested_subsets_of_a_subset_compose_class_order():
    ds = labelled()
    outer = nested_subsets(ds, [6], seed=1)[0]
    inner = nested_subsets(outer, [2, 4], seed=2)
    for s in inner:
        for i in range(len(s)):
            x, y = s[i]
            assert s.class_order[y] == int(ds.targets[int(x.item())])


def test_nested_subsets_generic_dataset_is_lazy():
    class Plain(torch.utils.data.Dataset):
        def __init__(self):
            self.targets = torch.tensor([2, 0, 1, 2, 0, 1])
            self.num_classes = 3

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.tensor([float(i)]), int(self.targets[i])

    d1, d2 = nested_subsets(Plain(), [1, 3], seed=0)
    assert isinstance(d1, ClassSubset) and len(d1) == 2 and len(d2) == 6
    assert all(d1[i][1] == 0 for i in range(2)) and d2.num_classes == 3
    assert sorted(int(d2[i][1]) for i in range(6)) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "schedule, pattern",
    [
        ([5, 5, 10], r"class counts \[5, 5, 10\] must be strictly increasing"),
        ([7, 5], r"must be strictly increasing"),
        ([5, 11], r"schedule entry 11 gives 11 classes; each stage needs between 1 and 10"),
        ([0, 5], r"schedule entry 0 gives 0 classes"),
        ([5, 1.0], r"mixes counts and fractions"),
        ([0.5, 1.5], r"fractions \[1.5\] are outside \(0, 1\]"),
        ([0.0, 1.0], r"fractions \[0.0\] are outside"),
        ([0.01, 1.0], r"schedule entry 0.01 gives 0 classes"),
        ([], r"non-empty list"),
        ("5,7", r"non-empty list"),
        ([True, 5], r"mixes counts and fractions or has non-numbers"),
    ],
)
def test_nested_subsets_bad_schedule(schedule, pattern):
    with pytest.raises(NetgrowValueError, match=pattern):
        nested_subsets(labelled(), schedule)


def test_resolve_schedule_rounding_and_missing_targets():
    assert resolve_schedule([0.5, 0.7, 1.0], 100) == [50, 70, 100]
    assert resolve_schedule([0.25, 0.5], 10) == [3, 5]  # 2.5 rounds up
    with pytest.raises(NetgrowTypeError, match="has no 'targets'"):
        nested_subsets(torch.utils.data.TensorDataset(torch.zeros(3, 1)), [1])


# ------------------------------------------------------------------------------------------------
# the remaining error paths, one assertion each


def test_in_memory_dataset_more_errors():
    from netgrow.data.base import channel_stats

    y = torch.tensor([0, 1, 1])
    with pytest.raises(NetgrowTypeError, match="data must be a torch.Tensor, got ndarray"):
        InMemoryDataset(np.zeros((3, 1, 2, 2)), y, ["a", "b"], "toy")
    with pytest.raises(DataError, match="needs at least one class"):
        InMemoryDataset(torch.zeros(3, 1, 2, 2), y, [], "toy")
    with pytest.raises(DataError, match="empty data set and no mean/std given"):
        InMemoryDataset(torch.zeros(0, 1, 2, 2), torch.zeros(0), ["a"], "toy")
    with pytest.raises(DataError, match=r"one value per channel \(1\), got 2 and 2"):
        InMemoryDataset(torch.zeros(3, 1, 2, 2), y, ["a", "b"], "toy", mean=(0, 0), std=(1, 1))
    with pytest.raises(DataError, match=r"std must be positive, got \(0.0,\)"):
        InMemoryDataset(torch.zeros(3, 1, 2, 2), y, ["a", "b"], "toy", mean=(0,), std=(0,))
    with pytest.raises(DataError, match="cannot compute channel statistics of an empty tensor"):
        channel_stats(torch.zeros(0, 3, 2, 2))


def test_idx_more_errors(tmp_path):
    p = tmp_path / "h-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02")  # header says 3 dims, has 1
    with pytest.raises(DataError, match=r"h-idx3-ubyte is truncated inside its header \(8 bytes\)"):
        read_idx(p)
    make_idx_dir(tmp_path / "a", gz=False)
    img = np.zeros((12, 5, 5), dtype=">i2")
    header = bytes([0, 0, 0x0B, 3]) + b"".join(struct.pack(">I", d) for d in img.shape)
    (tmp_path / "a" / "train-images-idx3-ubyte").write_bytes(header + img.tobytes())
    with pytest.raises(DataError, match=r"holds int16 pixels, expected unsigned bytes"):
        load_fashion_mnist(root=tmp_path / "a")
    make_idx_dir(tmp_path / "b", gz=False)
    write_idx(tmp_path / "b" / "t10k-images-idx3-ubyte", np.zeros((6, 7, 7)))
    with pytest.raises(DataError, match=r"train images are \(5, 5\) but test images \(7, 7\)"):
        load_fashion_mnist(root=tmp_path / "b")
    d = tmp_path / "c"
    d.mkdir()
    (d / "train-images-idx3-ubyte").mkdir()  # a directory where a file should be: not found
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_mnist(root=d)


def test_cifar_more_errors(tmp_path):
    ref = make_cifar10(tmp_path / "a")
    with open(ref["dir"] / "batches.meta", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(DataError, match=r"batches.meta holds a list, expected a dict"):
        load_cifar10(root=tmp_path / "a")
    with open(ref["dir"] / "batches.meta", "wb") as f:
        pickle.dump({b"names": []}, f)
    with pytest.raises(DataError, match=r"batches.meta has no 'label_names' entry \(keys: \['names'\]\)"):
        load_cifar10(root=tmp_path / "a")
    with open(ref["dir"] / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"a", b"b"]}, f)
    with pytest.raises(DataError, match=r"lists 2 label names, expected 10"):
        load_cifar10(root=tmp_path / "a")
    make_cifar100(tmp_path / "b")
    (tmp_path / "b" / "cifar-100-python" / "test").unlink()
    with pytest.raises(DataError, match=r"CIFAR-100 file .*test is missing"):
        load_cifar100(root=tmp_path / "b")


def test_image_reading_errors(tmp_path):
    from netgrow.data.images import read_image, read_images

    with pytest.raises(NetgrowValueError, match=r"image mode='CMYK'; use 'RGB' or 'L'"):
        read_image(tmp_path / "x.png", mode="CMYK")
    with pytest.raises(DataError, match="no image files to read for train"):
        read_images([], desc="train")


def test_tinyimagenet_more_errors(tmp_path):
    ref = make_tinyimagenet(tmp_path)
    d = ref["dir"]
    (d / "wnids.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"wnids.txt lists no classes"):
        load_tinyimagenet(root=tmp_path, cache=False)
    (d / "wnids.txt").write_text("n01\nn02\nn03\nn04\n")
    with pytest.raises(DataError, match=r"train directory .*n04/images is missing"):
        load_tinyimagenet(root=tmp_path, cache=False)
    (d / "train" / "n04" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train directory .*n04/images has no images"):
        load_tinyimagenet(root=tmp_path, cache=False)
    (d / "wnids.txt").write_text("n01\nn02\nn03\n")
    ann = d / "val" / "val_annotations.txt"
    good = ann.read_text()
    ann.write_text(good + "garbage-line\n")
    with pytest.raises(DataError, match=r"val_annotations.txt line 5 is malformed: 'garbage-line'"):
        load_tinyimagenet(root=tmp_path, cache=False)
    ann.write_text(good + "val_9.JPEG\tn01\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=r"validation image .*val_9.JPEG \(from .*line 5\) is missing"):
        load_tinyimagenet(root=tmp_path, cache=False)
    ann.write_text("\n")
    with pytest.raises(DataError, match=r"val_annotations.txt lists no images"):
        load_tinyimagenet(root=tmp_path, cache=False)


def test_tinyimagenet_stale_or_corrupt_cache(tmp_path):
    make_tinyimagenet(tmp_path)
    cache = tmp_path / "cache"
    train, _ = load_tinyimagenet(root=tmp_path, size=(8, 8), cache_dir=cache, progress=False)
    (npz,) = cache.glob("*.npz")
    npz.write_bytes(b"not a zip")  # a corrupt cache is rebuilt, not fatal
    again, _ = load_tinyimagenet(root=tmp_path, size=(8, 8), cache_dir=cache, progress=False)
    assert torch.equal(again.data, train.data)
    np.savez(npz, train_x=np.zeros((2, 3, 8, 8), np.uint8), val_x=np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"cache tinyimagenet-.*\.npz does not match the files; delete it"):
        load_tinyimagenet(root=tmp_path, size=(8, 8), cache_dir=cache)


def test_imagefolder_more_errors(tmp_path):
    make_imagefolder(tmp_path / "t", classes=("a", "b"), per_class=1)
    with pytest.raises(DataError, match=r"too few images per class for a test split"):
        load_imagefolder(tmp_path / "t", progress=False)
    with pytest.raises(NetgrowValueError, match=r"test_fraction=1.0; use a value in \(0, 1\)"):
        load_imagefolder(tmp_path / "t", test_fraction=1.0)
    with pytest.raises(NetgrowValueError, match=r"mode='P'; use 'RGB' or 'L'"):
        load_imagefolder(tmp_path / "t", mode="P")
    make_imagefolder(tmp_path / "u", classes=("a",), per_class=2, size=4)
    lazy = ImageFileDataset(sorted((tmp_path / "u" / "a").glob("*.png")), [0, 0], ["a"], "u", (0.5,) * 3, (0.2,) * 3,
                            size=(4, 4))  # fmt: skip
    save_png(lazy.paths[1], np.zeros((6, 6, 3), np.uint8))
    assert tuple(lazy[1][0].shape) == (3, 4, 4)  # a set size resizes
    unsized = ImageFileDataset(lazy.paths, [0, 0], ["a"], "u", (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(DataError, match=r"01.png is 6×6, expected 4×4; pass size=\(H, W\)"):
        unsized[1]
    with pytest.raises(DataError, match="2 files but 1 labels"):
        ImageFileDataset(lazy.paths, [0], ["a"], "u", (0.5,) * 3, (0.2,) * 3)


def test_generated_sets_argument_errors():
    with pytest.raises(NetgrowValueError, match=r"num_samples=10, train_split=0.8; use num_samples >= 20"):
        load("mnist1d", num_samples=10)
    with pytest.raises(NetgrowValueError, match=r"load_digits: test_fraction=0; use a value in \(0, 1\)"):
        load("digits", test_fraction=0)
    with pytest.raises(NetgrowValueError, match=r"name=3; use one of \["):
        load(3)


def test_nested_subsets_dataset_without_classes():
    class NoClasses(torch.utils.data.Dataset):
        targets = torch.zeros(0, dtype=torch.long)
        num_classes = 0

    with pytest.raises(DataError, match="the data set has no classes"):
        nested_subsets(NoClasses(), [1])


def test_crop_fill_must_match_channels():
    from netgrow.data.transforms import CropFlip

    with pytest.raises(NetgrowValueError, match="fill has 2 values for 3 channels"):
        CropFlip(padding=1, fill=(0.0, 1.0))(torch.zeros(2, 3, 4, 4), torch.Generator())


def test_unreadable_paths(tmp_path):
    from netgrow.data.cifar import read_pickle

    with pytest.raises(DataError, match=r"cannot read .*: \[Errno 21\] Is a directory"):
        read_pickle(tmp_path)
    with pytest.raises(DataError, match=r"cannot read .*Is a directory"):
        read_idx(tmp_path)
