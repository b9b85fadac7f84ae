"""DVS128 Gesture: AEDAT 3.1 packets and label segments (event exact), tonic's npy, training."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import ottt_jax
from ottt_jax.data import dvs_gesture, events, make_loader
from ottt_jax.data.prepare import prepare_dataset

HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"


def _packet(kind, overflow, evs, size=8):
    """A cAER packet: 28-byte header, then (data, timestamp) events of ``size`` bytes."""
    body = b""
    for x, y, p, ts, valid in evs:
        data = (x << 17) | (y << 2) | (p << 1) | valid
        body += struct.pack("<Ii", data, ts) + b"\0" * (size - 8)
    head = struct.pack("<hhiiiiii", kind, 0, size, 4, overflow, len(evs), len(evs), len(evs))
    return head + body


def _aedat():
    return HEADER + b"".join([
        _packet(1, 0, [(5, 7, 1, 100, 1), (127, 0, 0, 250, 1), (9, 9, 1, 260, 0)]),  # 3rd invalid
        _packet(2, 0, [(0, 0, 0, 300, 1)]),  # a special-event packet: skipped
        _packet(1, 1, [(1, 2, 1, 10, 1)], size=12),  # after a timestamp overflow: t = 2³¹ + 10
    ])  # fmt: skip


def test_read_aedat_reads_a_path_like_its_bytes(tmp_path):
    path = tmp_path / "user01_fluorescent.aedat"
    path.write_bytes(_aedat())
    from_path = dvs_gesture.read_aedat(path)
    assert from_path.shape == (3,)
    np.testing.assert_array_equal(from_path, dvs_gesture.read_aedat(_aedat()))


def test_read_aedat_decodes_polarity_packets_by_hand():
    ev = dvs_gesture.read_aedat(_aedat())
    assert ev.dtype == events.DVS_EVENT
    np.testing.assert_array_equal(ev["x"], [5, 127, 1])
    np.testing.assert_array_equal(ev["y"], [7, 0, 2])
    np.testing.assert_array_equal(ev["p"], [1, 0, 1])
    np.testing.assert_array_equal(ev["t"], [100, 250, (1 << 31) + 10])
    with pytest.raises(ValueError, match="END-HEADER"):
        dvs_gesture.read_aedat(b"#!AER-DAT3.1\r\n")
    with pytest.raises(ValueError, match="truncated"):
        dvs_gesture.read_aedat(_aedat()[:-3])


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two trials in the original layout, and the same samples in tonic's npy layout."""
    root = tmp_path_factory.mktemp("gesture")
    orig = root / "orig" / "DvsGesture"
    orig.mkdir(parents=True)
    for name in ("user01_led", "user24_led"):
        (orig / f"{name}.aedat").write_bytes(_aedat())
    labels = "class,startTime_usec,endTime_usec\n3,0,200\n11,200,2147483700\n5,0,300\n7,100,260\n"
    (orig / "user01_led_labels.csv").write_text(labels)
    (orig / "user24_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,90,101\n")
    (orig / "trials_to_train.txt").write_text("user01_led.aedat\n")
    (orig / "trials_to_test.txt").write_text("user24_led.aedat\n")
    tonic = root / "tonic"
    train_files = {"10": [[3, 4, 1, 1.5], [6, 7, 0, 2.25]], "2": [[0, 0, 0, 0.0]]}
    for folder, trial, files in (
        ("ibmGestureTrain", "user01_led", train_files),
        ("ibmGestureTest", "user24_led", {"5": [[127, 127, 1, 3.0]]}),
    ):
        (tonic / folder / trial).mkdir(parents=True)
        for label, arr in files.items():
            np.save(tonic / folder / trial / f"{label}.npy", np.array(arr))
    return root


def test_prepared_aedat_segments_are_the_labelled_events(raw, tmp_path):
    prepare_dataset("dvs_gesture", manual_dir=raw / "orig", data_dir=tmp_path)
    train = make_loader("dvs_gesture", "train", batch_size=2, seed=0, shuffle=False,
                        num_frames=2, data_dir=tmp_path)  # fmt: skip
    b = next(iter(train))
    np.testing.assert_array_equal(b["label"], [2, 10])  # classes 3 and 11
    img = b["image"]
    assert img.shape == (2, 2, 128, 128, 2)
    # Segment 1 = the event at t = 100 only (one event, T = 2: all in the last frame).
    assert img[0].sum() == 1 and img[0, 1, 7, 5, 1] == 1
    # Segment 2 = t = 250 and t = 2³¹ + 10: one event per frame.
    assert img[1, 0, 0, 127, 0] == 1 and img[1, 1, 2, 1, 1] == 1 and img[1].sum() == 2
    test = next(iter(make_loader("dvs_gesture", "test", batch_size=1, seed=0, num_frames=2,
                                 data_dir=tmp_path)))  # fmt: skip
    assert test["label"][0] == 0 and test["image"].sum() == 1  # [90, 101): the t = 100 event


def test_prepared_tonic_npy_layout(raw, tmp_path):
    prepare_dataset("dvs_gesture", manual_dir=raw / "tonic", data_dir=tmp_path)
    source = dvs_gesture.SPEC.open_split("train", str(tmp_path), 1)
    assert len(source) == 2
    r0, r1 = source[0], source[1]
    assert int(r0["label"]) == 2 and int(r1["label"]) == 10  # sorted by label number
    assert r1["frames"][0, 4, 3, 1] == 1 and r1["frames"][0, 7, 6, 0] == 1
    ev = dvs_gesture.read_npy(raw / "tonic" / "ibmGestureTrain" / "user01_led" / "10.npy")
    np.testing.assert_array_equal(ev["t"], [1500, 2250])  # ms -> µs


def test_dvsgesture_preset_trains_two_steps_by_name(raw, tmp_path):
    data_dir = tmp_path / "data"
    prepare_dataset("dvs_gesture", manual_dir=raw / "orig", data_dir=data_dir)
    r = ottt_jax.train(
        "dvsgesture_vgg",
        ["progress=false", "num_steps=2", "model.vgg_cfg=[2,M,M,M]", f"data.data_dir={data_dir}",
         "data.batch_size=4", "data.eval_batch_size=4", "max_train_steps=2", "optim.epochs=4"],
        workdir=str(tmp_path / "wd"),
    )  # fmt: skip
    assert r["steps"] == 2 and np.isfinite(r["train_loss"])
