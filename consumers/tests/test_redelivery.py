from consumers.redelivery import (
    segments_exhausted_end,
    segments_hand_out,
    segments_head_count,
    segments_trim,
)


def test_hand_outs_count_each_offset_of_the_prefix():
    segments = segments_hand_out([], 0, 10)
    assert segments == [[10, 1]]
    segments = segments_hand_out(segments, 0, 4)
    assert segments == [[4, 2], [10, 1]]
    segments = segments_hand_out(segments, 0, 12)
    assert segments == [[4, 3], [10, 2], [12, 1]]
    assert segments_head_count(segments, 0) == 3
    assert segments_head_count(segments, 4) == 2
    assert segments_head_count(segments, 12) == 0


def test_commits_trim_and_equal_neighbours_merge():
    segments = segments_trim([[4, 3], [10, 2], [12, 1]], 4)
    assert segments == [[10, 2], [12, 1]]
    assert segments_hand_out(segments, 4, 10) == [[10, 3], [12, 1]]
    assert segments_hand_out([[10, 2], [12, 1]], 4, 12) == [[10, 3], [12, 2]]
    assert segments_hand_out([[5, 1]], 0, 10) == [[5, 2], [10, 1]]
    assert segments_hand_out([[5, 2], [10, 1]], 0, 5) == [[5, 3], [10, 1]]
    assert segments_hand_out([[5, 1], [10, 1]], 0, 10) == [[10, 2]]


def test_exhausted_prefix():
    segments = [[3, 5], [7, 4], [9, 1]]
    assert segments_exhausted_end(segments, 0, 5) == 3
    assert segments_exhausted_end(segments, 0, 4) == 7
    assert segments_exhausted_end(segments, 0, 6) == 0
    assert segments_exhausted_end([], 8, 1) == 8
