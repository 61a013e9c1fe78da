"""Training from labelled identity folders (ROOT/<identity>/*.jpg) end to end.

A small synthetic identity set is drawn here (a distinct procedural pattern
per identity, each image shifted, rotated, relit and noised), the real trainer
runs a few dozen steps, and the exported ONNX file, run by ONNX Runtime, must
put images of one identity clearly closer together than images of two.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="torch (the 'train' extra) is needed to train")
ort = pytest.importorskip("onnxruntime")

N_IDS, PER_ID, SIZE = 8, 6, 64


def identity_image(identity: int, variant: int) -> np.ndarray:
    """Identity = pattern (gratings, colours, blob layout); variant = pose, light, noise."""
    base_rng = np.random.default_rng(1000 + identity)
    freq = base_rng.uniform(1.0, 4.0, 2)
    phase = base_rng.uniform(0, 2 * np.pi, 2)
    colours = base_rng.integers(0, 256, (3, 3))
    blobs = base_rng.uniform(0.15, 0.85, (3, 2))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    g = 0.5 + 0.25 * np.sin(2 * np.pi * freq[0] * xx + phase[0]) + 0.25 * np.sin(2 * np.pi * freq[1] * yy + phase[1])
    img = (g[..., None] * colours[0] + (1 - g[..., None]) * colours[1]).astype(np.uint8)
    for (bx, by), c in zip(blobs, colours):
        cv2.circle(img, (int(bx * SIZE), int(by * SIZE)), SIZE // 7, tuple(int(v) for v in c[::-1]), -1)
    rng = np.random.default_rng(identity * 100 + variant)
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), rng.uniform(-8, 8), rng.uniform(0.93, 1.07))
    m[:, 2] += rng.uniform(-4, 4, 2)
    img = cv2.warpAffine(img, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-15, 15) + rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from export.train import main

    root = tmp_path_factory.mktemp("ids")
    for i in range(N_IDS):
        d = root / f"person{i:02d}"
        d.mkdir()
        for v in range(PER_ID):
            cv2.imwrite(str(d / f"{v}.jpg"), identity_image(i, v))
    out = root / "run"
    # the seed architecture (28x28 colour) is the cheap one; one thread, as the net is tiny
    rc = main(["--identities", str(root), "--out", str(out), "--arch", "seed", "--steps", "30",
               "--batch", "12", "--workers", "0", "--seed", "3", "--val-every", "15", "--skip-speed",
               "--no-progress", "--threads", "1", "--name", "ids-test", "--version", "t1"])
    assert rc == 0
    return out


def test_training_writes_model_card_plots_and_onnx(trained):
    for name in ("model.onnx", "loss.png", "architecture.png", "model-card.md", "info.json", "history.json"):
        assert (trained / name).is_file() and (trained / name).stat().st_size > 0, name
    info = json.loads((trained / "info.json").read_text())
    assert info["onnx_max_abs_diff"] <= 1e-4
    assert info["steps"] == 30 and info["parameters"] > 0
    history = json.loads((trained / "history.json").read_text())
    assert len(history["loss"]) == 30 and all(np.isfinite(history["loss"]))
    assert np.mean(history["loss"][-10:]) < np.mean(history["loss"][:10])      # it learned something
    meta = ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    assert meta["camwatch.model_name"] == "ids-test" and meta["camwatch.channels"] == "rgb"
    assert "AUC" in (trained / "model-card.md").read_text()


def test_same_identity_is_clearly_closer_than_different(trained):
    from camwatch.vision.preprocess import InputSpec, prepare

    sess = ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    spec = InputSpec(int(meta["camwatch.input_width"]), int(meta["camwatch.input_height"]), meta["camwatch.channels"],
                     float(meta["camwatch.input_scale"]), tuple(float(v) for v in meta["camwatch.mean"].split(",")),
                     tuple(float(v) for v in meta["camwatch.std"].split(",")))
    # fresh variants, never seen in training
    labels = np.repeat(np.arange(N_IDS), 4)
    x = np.stack([prepare(identity_image(i, 50 + k), spec) for i in range(N_IDS) for k in range(4)])
    e = sess.run(["embedding"], {"image": x})[0]
    sim = e @ e.T
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    diff = labels[:, None] != labels[None, :]
    s_same, s_diff = sim[same], sim[diff]
    # AUC of "same identity" by similarity: 0.5 is chance
    auc = float(np.mean(s_same[:, None] > s_diff[None, :]) + 0.5 * np.mean(s_same[:, None] == s_diff[None, :]))
    assert auc > 0.9, f"same/different identity AUC {auc:.3f}"
    assert s_same.mean() - s_diff.mean() > 0.2


def test_two_members_train_one_after_the_other_into_one_onnx(tmp_path):
    """--members: each shake profile trains its own net; one ONNX file holds them all."""
    from export.train import main

    root = tmp_path / "ids"
    for i in range(4):
        (root / f"p{i}").mkdir(parents=True)
        for v in range(3):
            cv2.imwrite(str(root / f"p{i}" / f"{v}.jpg"), identity_image(i, v))
    out = tmp_path / "run"
    rc = main(["--identities", str(root), "--out", str(out), "--arch", "seed", "--steps", "6",
               "--batch", "6", "--workers", "0", "--val-every", "0", "--skip-speed", "--no-progress",
               "--threads", "1", "--members", "tolerant,strict", "--version", "t2"])
    assert rc == 0
    info = json.loads((out / "info.json").read_text())
    assert info["members"] == ["tolerant", "strict"] and info["embedding_dim"] == 2 * 784
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 12
    assert "ensemble of 2 nets" in (out / "model-card.md").read_text()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    emb = sess.run(None, {"image": np.random.default_rng(0).random((2, 3, 28, 28), dtype=np.float32)})[0]
    assert emb.shape == (2, 2 * 784) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_an_unknown_member_profile_is_refused(tmp_path, capsys):
    from export.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--identities", str(tmp_path), "--out", str(tmp_path / "o"), "--members", "wobbly"])
    assert exc.value.code == 2 and "unknown shake profile(s) wobbly" in capsys.readouterr().err



def test_a_traffic_chance_outside_0_to_1_is_refused_in_one_line(tmp_path, capsys):
    from export.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--identities", str(tmp_path), "--out", str(tmp_path / "o"), "--traffic", "25"])
    assert exc.value.code == 2 and "--traffic 25.0: a chance, so within 0..1" in capsys.readouterr().err


def test_traffic_pairs_without_traffic_are_refused_in_one_line(tmp_path, capsys):
    from export.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--identities", str(tmp_path), "--out", str(tmp_path / "o"), "--traffic-pairs", "1"])
    assert exc.value.code == 2 and "--traffic-pairs pairs near traffic with covers: give --traffic too" \
        in capsys.readouterr().err


def test_a_soup_of_a_model_with_itself_is_that_model(trained, tmp_path):
    """export.soup averages weights and sets the threshold as the trainer does: one model twice must give it back."""
    import shutil

    from export.soup import main

    ids = tmp_path / "ids"       # the identities alone (the fixture's run folder sits among them)
    shutil.copytree(trained.parent, ids, ignore=lambda d, names: [n for n in names if n == trained.name])
    part = str(trained / "model.pt")
    assert main([part, part, "--identities", str(ids), "--arch", "seed", "--seed", "3",
                 "--out", str(tmp_path / "soup")]) == 0
    a = ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(tmp_path / "soup" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(0, 1, (4, 3, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(a.run(None, {"image": x})[0], b.run(None, {"image": x})[0], atol=1e-5)
    ta = float(a.get_modelmeta().custom_metadata_map["camwatch.threshold"])
    tb = float(b.get_modelmeta().custom_metadata_map["camwatch.threshold"])
    assert tb == pytest.approx(ta, abs=1e-6)

    # two different parts: every weight is their mean (not their sum, which L2 output could hide)
    import torch

    base = torch.load(part)
    moved = {k: v + 0.5 if v.is_floating_point() else v for k, v in base.items()}
    torch.save(moved, tmp_path / "moved.pt")
    assert main([part, str(tmp_path / "moved.pt"), "--identities", str(ids), "--arch", "seed", "--seed", "3",
                 "--out", str(tmp_path / "soup2")]) == 0
    soup = torch.load(tmp_path / "soup2" / "model.pt")
    for k, v in base.items():
        if v.is_floating_point():
            torch.testing.assert_close(soup[k], v + 0.25, rtol=0, atol=1e-6)


def test_a_soup_needs_two_parts_that_exist(tmp_path, capsys):
    from export.soup import main

    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "o")])
    assert "not found" in capsys.readouterr().err


def _similarities(embed, images: list[np.ndarray]) -> np.ndarray:
    e = embed(images)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return e @ e.T


def test_a_student_distilled_from_a_model_learns_its_similarities(trained, tmp_path):
    """--distill: the student's cosine similarities approach the teacher's (not just any training)."""
    import torch

    from camwatch.vision.preprocess import InputSpec, prepare
    from export.nets import build
    from export.train import Teachers, main

    ids = trained.parent
    teacher_path = trained / "model.onnx"
    out = tmp_path / "student"
    assert main(["--identities", str(ids), "--out", str(out), "--arch", "seed", "--steps", "40", "--batch", "12",
                 "--workers", "0", "--seed", "4", "--val-every", "0", "--skip-speed", "--no-progress",
                 "--threads", "1", "--lr", "3e-3", "--distill", str(teacher_path)]) == 0
    info = json.loads((out / "info.json").read_text())
    assert info["distilled_from"] == [str(teacher_path)]
    assert f"Distilled from `{teacher_path}`" in (out / "model-card.md").read_text()
    history = json.loads((out / "history.json").read_text())
    assert np.mean(history["loss"][-10:]) < 0.5 * np.mean(history["loss"][:5])

    spec_d = build("seed")[1]
    spec = InputSpec(spec_d["width"], spec_d["height"], spec_d["channels"], spec_d["scale"],
                     tuple(spec_d["mean"]), tuple(spec_d["std"]))
    images = [identity_image(i, v) for i in range(N_IDS) for v in (7, 8)]     # variants never trained on
    batch = lambda imgs: np.stack([prepare(im, spec) for im in imgs])         # noqa: E731

    def onnx_embed(path: Path):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda imgs: sess.run(None, {sess.get_inputs()[0].name: batch(imgs)})[0]

    torch.manual_seed(4)                                   # the student before training (train_member's init)
    start, _ = build("seed")
    start.eval()
    with torch.no_grad():
        s_start = _similarities(lambda imgs: start(torch.from_numpy(batch(imgs))).numpy(), images)
    s_teacher = _similarities(onnx_embed(teacher_path), images)
    s_student = _similarities(onnx_embed(out / "model.onnx"), images)
    before, after = np.abs(s_start - s_teacher).mean(), np.abs(s_student - s_teacher).mean()
    assert after < 0.5 * before, (before, after)

    # Two teachers: their similarity is the mean of theirs, so a model twice is that model.
    twice = Teachers([teacher_path, teacher_path], threads=1, spec=spec).embed(batch(images))
    assert np.allclose(twice @ twice.T, s_teacher, atol=1e-5)


def test_distill_refuses_a_missing_teacher_in_one_line(tmp_path, capsys):
    from export.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--identities", str(tmp_path), "--out", str(tmp_path / "o"), "--distill", str(tmp_path / "t.onnx")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--distill" in err and "t.onnx" in err and "no such model file" in err


def test_a_combined_model_gets_its_threshold_where_the_trainer_sets_one(trained, tmp_path):
    """export.combine with the data folders: the threshold export.train would write (a model twice: its own)."""
    pytest.importorskip("onnx")
    import shutil

    from export.combine import main

    ids = tmp_path / "ids"       # the identities alone (the fixture's run folder sits among them)
    shutil.copytree(trained.parent, ids, ignore=lambda d, names: [n for n in names if n == trained.name])
    own = float(ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"])
                .get_modelmeta().custom_metadata_map["camwatch.threshold"])
    out = tmp_path / "twice.onnx"
    assert main([str(trained / "model.onnx"), str(trained / "model.onnx"), "--out", str(out),
                 "--identities", str(ids), "--seed", "3"]) == 0
    meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert float(meta["camwatch.threshold"]) == pytest.approx(own, abs=2e-4)
    # With another --seed the held-out identities differ, and so (on this small set) does the threshold.
    assert main([str(trained / "model.onnx"), str(trained / "model.onnx"), "--out", str(out),
                 "--identities", str(ids), "--seed", "4"]) == 0
    meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert float(meta["camwatch.threshold"]) != pytest.approx(own, abs=2e-4)


def test_one_model_with_the_data_folders_gets_its_threshold_set_again(trained, tmp_path, capsys):
    """export.combine with one model: a copy whose threshold is set on today's validation pairs."""
    pytest.importorskip("onnx")
    import shutil

    from export.combine import main, set_threshold

    ids = tmp_path / "ids"
    shutil.copytree(trained.parent, ids, ignore=lambda d, names: [n for n in names if n == trained.name])
    own = float(ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"])
                .get_modelmeta().custom_metadata_map["camwatch.threshold"])
    stale = tmp_path / "stale.onnx"
    shutil.copyfile(trained / "model.onnx", stale)
    set_threshold(stale, 0.9)                  # a threshold from some other draw of pairs
    out = tmp_path / "again.onnx"
    assert main([str(stale), "--out", str(out), "--identities", str(ids), "--seed", "3"]) == 0
    again = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert float(again.get_modelmeta().custom_metadata_map["camwatch.threshold"]) == pytest.approx(own, abs=2e-4)
    x = np.random.default_rng(0).random((3, *again.get_inputs()[0].shape[1:])).astype(np.float32)
    before = ort.InferenceSession(str(stale), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(again.run(None, {"image": x})[0], before.run(None, {"image": x})[0])
    # without the data folders one model is a usage error, in one line
    with pytest.raises(SystemExit):
        main([str(stale), "--out", str(tmp_path / "no.onnx")])
    assert "two or more" in capsys.readouterr().err and not (tmp_path / "no.onnx").exists()
