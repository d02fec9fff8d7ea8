"""The Python engine's segment map: tiling, resume validation, work stealing."""

from __future__ import annotations

from sdpanel.downloads._segments import Segment, SegmentMap, plan_parts

MiB = 1 << 20


def tiles(m: SegmentMap) -> bool:
    pos = 0
    for s in m.segments:
        if s.start != pos or not (s.start <= s.done <= s.end):
            return False
        pos = s.end
    return pos == m.size


def test_fresh_map_tiles_the_file() -> None:
    for size in (1, 10, MiB - 1, 16 * MiB + 7, 1 << 32):
        for parts in (1, 3, 16):
            m = SegmentMap.fresh(size, parts, MiB)
            assert tiles(m) and m.done_bytes() == 0
    assert len(SegmentMap.fresh(3 * MiB, 16, MiB).segments) == 3  # no tiny parts


def test_plan_parts_trades_latency_for_hash_tail() -> None:
    assert plan_parts(100 * MiB, 16, 0.05, MiB) % 16 == 0
    # Bigger files and shorter latency: more rounds; never more than the file allows.
    assert plan_parts(8 << 30, 16, 0.05, MiB) > plan_parts(256 * MiB, 16, 0.05, MiB)
    assert plan_parts(8 << 30, 16, 0.5, MiB) < plan_parts(8 << 30, 16, 0.05, MiB)
    assert plan_parts(2 * MiB, 16, 0.01, MiB) == 16  # one round; fresh() caps the count


def test_state_roundtrip_and_rejects_bad_maps() -> None:
    m = SegmentMap.fresh(10 * MiB, 4, MiB)
    m.segments[1].done += 12345
    again = SegmentMap.from_state(10 * MiB, m.to_state())
    assert again is not None and again.to_state() == m.to_state()
    assert again.done_bytes() == 12345
    size = 100
    assert SegmentMap.from_state(size, [[0, 50, 50], [50, 100, 60]]) is not None
    for bad in ([[0, 50, 50]], [[0, 50, 60], [50, 100, 50]], [[0, 60, 0], [50, 100, 50]],
                [[0, 100]], "junk", None, [[0, 100, -1]], [[0, 101, 0]]):
        assert SegmentMap.from_state(size, bad) is None, bad


def test_prefix_follows_contiguous_done_bytes() -> None:
    m = SegmentMap(100, [Segment(0, 40, 40), Segment(40, 70, 55), Segment(70, 100, 100)])
    assert m.prefix() == 55
    m.segments[1].done = 70
    assert m.prefix() == 100 and m.complete()


def test_steal_takes_the_range_expected_to_finish_last() -> None:
    m = SegmentMap(100 * MiB, [Segment(0, 50 * MiB, 10 * MiB, owner=0),
                               Segment(50 * MiB, 100 * MiB, 60 * MiB, owner=1)])
    # Worker 1 is 10x slower: its 40 MiB left take longest although worker 0 has as much.
    speeds = {0: 10e6, 1: 1e6, 2: 10e6}
    new = m.steal(2, speeds, latency=0.0, min_piece=256 << 10)
    assert new is not None and new.owner == 2 and m.splits == 1
    victim = m.segments[1]
    assert victim.end == new.start and new.end == 100 * MiB and tiles(m)
    # Balanced: the slow owner keeps about 1/11 of the rest (both finish together).
    kept = victim.end - 60 * MiB
    assert 0.05 < kept / (40 * MiB) < 0.15


def test_half_split_without_speeds_or_when_unbalanced() -> None:
    m = SegmentMap(64 * MiB, [Segment(0, 64 * MiB, 0, owner=0)])
    new = m.steal(1, {}, latency=0.0, min_piece=MiB)
    assert new is not None and new.start == 32 * MiB
    m2 = SegmentMap(64 * MiB, [Segment(0, 64 * MiB, 0, owner=0)])
    new2 = m2.steal(1, {0: 1e6, 1: 10e6}, latency=0.0, min_piece=MiB, balanced=False)
    assert new2 is not None and new2.start == 32 * MiB


def test_no_steal_of_small_or_own_or_unowned_ranges() -> None:
    m = SegmentMap(MiB, [Segment(0, MiB, 0, owner=0)])
    assert m.steal(1, {}, 0.0, min_piece=MiB) is None  # too small to be worth a request
    m = SegmentMap(64 * MiB, [Segment(0, 64 * MiB, 0, owner=1)])
    assert m.steal(1, {}, 0.0, min_piece=MiB) is None  # its own
    m = SegmentMap(64 * MiB, [Segment(0, 64 * MiB, 0)])
    assert m.steal(1, {}, 0.0, min_piece=MiB) is None  # unowned: taken whole instead
    assert m.take_unowned(1) is m.segments[0]


def test_split_goes_above_bytes_already_read() -> None:
    seg = Segment(0, 64 * MiB, 0, owner=0, read_pos=40 * MiB)
    m = SegmentMap(64 * MiB, [seg])
    new = m.steal(1, {}, 0.0, min_piece=MiB)
    assert new is not None and new.start >= 52 * MiB - (64 << 10)


def test_latency_makes_small_tails_not_worth_stealing() -> None:
    # 2 MiB left at 10 MB/s is 0.2 s; a stealer paying 1 s first-byte latency cannot help.
    m = SegmentMap(64 * MiB, [Segment(0, 64 * MiB, 62 * MiB, owner=0)])
    assert m.steal(1, {0: 10e6, 1: 10e6}, latency=1.0, min_piece=256 << 10) is None


def test_early_steal_only_for_ranges_outlasting_the_rest() -> None:
    m = SegmentMap(100 * MiB, [Segment(0, 20 * MiB, 0, owner=0),
                               Segment(20 * MiB, 40 * MiB, 20 * MiB, owner=1),
                               Segment(40 * MiB, 100 * MiB, 40 * MiB)])
    speeds = {0: 20e6, 1: 2e6, 2: 20e6}
    # Worker 1 needs ~10 s for its range; the whole rest needs ~2.2 s at 42 MB/s.
    new = m.steal(2, speeds, latency=0.05, min_piece=MiB, horizon=2.2)
    # The slow owner keeps only what arrives while the stealer waits for its first byte
    # (0.05 s at 2 MB/s, rounded up to 64 KiB): its range no longer stalls the hash cursor.
    assert new is not None and new.owner == 2 and new.end == 40 * MiB and tiles(m)
    assert 0 < m.segments[1].end - 20 * MiB <= 2 * (64 << 10)
    # A slow connection does not take over another slow one's range.
    m3 = SegmentMap(100 * MiB, [Segment(0, 20 * MiB, 0, owner=0),
                                Segment(20 * MiB, 40 * MiB, 20 * MiB, owner=1),
                                Segment(40 * MiB, 100 * MiB, 40 * MiB)])
    assert m3.steal(3, {**speeds, 3: 2e6}, latency=0.05, min_piece=MiB, horizon=2.2) is None
    # Nothing outlasts a long horizon: no early steal (unassigned ranges come first).
    m2 = SegmentMap(100 * MiB, [Segment(0, 20 * MiB, 0, owner=0), Segment(20 * MiB, 100 * MiB, 20 * MiB)])
    assert m2.steal(2, speeds, latency=0.05, min_piece=MiB, horizon=30.0) is None
    assert m2.steal(2, {}, latency=0.05, min_piece=MiB, horizon=1.0) is None  # no speeds yet


def test_slow_workers_take_ranges_from_the_end() -> None:
    m = SegmentMap.fresh(64 * MiB, 8, MiB)
    assert m.take_unowned(0, from_end=True) is m.segments[-1]
    assert m.take_unowned(1) is m.segments[0]


def test_slow_worker_gets_only_what_it_can_finish_in_time() -> None:
    m = SegmentMap.fresh(64 * MiB, 4, MiB)  # 16 MiB each
    seg = m.take_unowned(3, from_end=True, limit=2 * MiB)
    assert seg is not None and seg.owner == 3 and tiles(m) and m.splits == 1
    assert (seg.start, seg.end) == (62 * MiB, 64 * MiB)
    rest = m.segments[-2]
    assert rest.owner is None and (rest.start, rest.end) == (48 * MiB, 62 * MiB)
    # The next taker in file order is unaffected; a range within the limit is taken whole.
    assert m.take_unowned(0) is m.segments[0]
    m2 = SegmentMap.fresh(4 * MiB, 4, MiB)
    assert m2.take_unowned(3, from_end=True, limit=2 * MiB) is m2.segments[-1]
    assert m2.splits == 0


def test_rounds_shrink_so_the_last_one_is_small() -> None:
    size = 96 * MiB
    m = SegmentMap.fresh(size, 12, MiB, rounds=3)  # 4 connections x 3 rounds
    assert tiles(m) and len(m.segments) == 12
    sizes = [s.end - s.start for s in m.segments]
    first, second, last = sizes[:4], sizes[4:8], sizes[8:]
    assert min(first) > max(second) and min(second) > max(last)
    # Weights 3:2:1: the last round, hashed only once all of it is done, is 1/6 of the file.
    assert abs(sum(last) - size / 6) < 16
    assert [s.end - s.start for s in SegmentMap.fresh(size, 4, MiB).segments] == [24 * MiB] * 4
