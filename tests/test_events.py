"""The events spec: the one frame-binning rule (by count, by time), records, the catalog kind."""

from __future__ import annotations

import numpy as np
import pytest

from ottt_jax.data import catalog, events


def _dvs(t, x, y, p):
    return events.dvs_events(np.array(t), np.array(x), np.array(y), np.array(p))


def test_bin_by_count_splits_event_numbers_exactly():
    # 7 events, T = 3: ⌊7/3⌋ = 2 per frame, the last frame takes events 4..6.
    ev = _dvs(range(7), [0, 1, 2, 0, 1, 2, 0], [0, 0, 1, 1, 0, 0, 1], [0, 1, 0, 1, 1, 0, 0])
    f = events.bin_events(ev, (3, 2, 2), 3, by="count")
    assert f.shape == (3, 2, 3, 2) and f.dtype == np.uint16
    want = np.zeros((3, 2, 3, 2), np.uint16)
    for j, (x, y, p) in zip([0, 0, 1, 1, 2, 2, 2], zip(ev["x"], ev["y"], ev["p"])):
        want[j, y, x, p] += 1
    np.testing.assert_array_equal(f, want)
    # Fewer events than frames: all in the last frame (SpikingJelly's split_by='number').
    g = events.bin_events(ev[:2], (3, 2, 2), 4, by="count")
    assert g[:3].sum() == 0 and g[3].sum() == 2


def test_bin_by_time_over_the_recording_span():
    # t from 10 to 31: span 21, T = 2 -> Δ = 10: [10, 20) frame 0, [20, 31] frame 1.
    ev = _dvs([10, 19, 20, 29, 30, 31], [0] * 6, [0] * 6, [0, 0, 0, 0, 1, 1])
    f = events.bin_events(ev, (1, 1, 2), 2, by="time")
    np.testing.assert_array_equal(f[:, 0, 0, :], [[2, 0], [2, 2]])


def test_bin_by_time_in_a_fixed_window_from_zero_drops_late_events():
    # Audio spikes, D = 100 µs, T = 4 -> windows of 25 µs; t = 100 is outside and dropped.
    t, ch = [0, 24, 25, 74, 75, 99, 100], [0, 2, 2, 1, 0, 0, 1]
    ev = events.audio_events(np.array(t), np.array(ch))
    f = events.bin_events(ev, (3,), 4, by="time", duration=100)
    assert f.shape == (4, 1, 1, 3)
    np.testing.assert_array_equal(f[:, 0, 0, :], [[1, 0, 1], [0, 0, 1], [0, 1, 0], [2, 0, 0]])


def test_bin_rejects_bad_input():
    ev = _dvs([0], [3], [0], [0])
    with pytest.raises(ValueError, match="outside the sensor"):
        events.bin_events(ev, (3, 1, 2), 1)
    with pytest.raises(ValueError, match="by must be one of"):
        events.bin_events(ev, (4, 1, 2), 1, by="space")
    with pytest.raises(ValueError, match="num_frames must be a positive int"):
        events.bin_events(ev, (4, 1, 2), 0)
    with pytest.raises(ValueError, match="duration applies to by='time'"):
        events.bin_events(ev, (4, 1, 2), 1, duration=5)


def test_records_round_trip_and_missing_files_name_the_command(tmp_path):
    ev = _dvs([5, 6], [1, 2], [0, 1], [1, 0])
    back, label = events.decode_record(events.encode_record(ev, 7))
    np.testing.assert_array_equal(back, ev)
    assert label == 7 and back.dtype == events.DVS_EVENT
    _, n = events.write_split("tiny_ev", "train", [(ev, 1), (ev[:1], 0)], tmp_path)
    source = events.EventsOpener("tiny_ev", (3, 2, 2))("train", str(tmp_path), 2)
    assert len(source) == n == 2
    rec = source[1]
    assert int(rec["label"]) == 0 and rec["frames"].shape == (2, 2, 3, 2)
    assert rec["frames"].sum() == 1 and rec["frames"][1, 0, 1, 1] == 1
    with pytest.raises(catalog.DatasetNotPreparedError, match=r"ottt_jax\.data\.prepare tiny_ev"):
        events.EventsOpener("tiny_ev", (3, 2, 2))("test", str(tmp_path), 2)
