"""The offline travel matrices and the traffic profile, against values worked out by hand."""

from __future__ import annotations

import pytest

from routing.matrices import (
    DETOUR_FACTOR,
    apply_traffic,
    haversine_m,
    offline_matrix,
    road_class,
    traffic_factor,
)

# One degree of latitude on the mean Earth sphere: 2 pi R / 360.
DEGREE_M = 111_195.08


def test_great_circle_distances():
    assert haversine_m((0, 0), (1, 0)) == pytest.approx(DEGREE_M, abs=0.01)
    assert haversine_m((52.0, 5.0), (52.0, 5.0)) == 0
    # Along a parallel the degree shrinks with cos(latitude): ~68.46 km at 52 N.
    assert haversine_m((52.0, 5.0), (52.0, 6.0)) == pytest.approx(68_458, abs=1)


@pytest.mark.parametrize(
    ("degrees", "road", "metres", "seconds"),
    [
        # 1,112 m as the crow flies: residential, 1,446 m of road at 20 km/h.
        (0.01, "residential", 1446, 260),
        # 5,560 m: urban, 7,228 m at 35 km/h.
        (0.05, "urban", 7228, 743),
        # 11,120 m: regional, 14,455 m at 60 km/h.
        (0.1, "regional", 14455, 867),
    ],
)
def test_offline_matrix_detour_and_speed_by_road_class(degrees, road, metres, seconds):
    great_circle = DEGREE_M * degrees
    assert road_class(great_circle).name == road
    assert round(great_circle * DETOUR_FACTOR) == metres
    distance, duration = offline_matrix([(0.0, 0.0), (degrees, 0.0)])
    assert distance == [[0, metres], [metres, 0]]
    assert duration == [[0, seconds], [seconds, 0]]


def test_traffic_multiplies_durations_not_distances():
    distance, duration = offline_matrix([(0.0, 0.0), (0.01, 0.0)], traffic=1.45)
    assert distance[0][1] == 1446
    assert duration[0][1] == round(1446 / (20 / 3.6) * 1.45) == 377


@pytest.mark.parametrize(
    ("start_h", "end_s", "factor"),
    [
        (0, 3600, 1.0),  # night
        (7, 9 * 3600, 1.4),  # 07-09: 1.35 and 1.45
        (7, 8 * 3600 + 1, 1.4),  # a started hour counts whole
        (7, 15 * 3600, 1.2),  # a day shift: 1.35 1.45 1.25 1.1 1.1 1.15 1.1 1.1
        (23, 24 * 3600, 1.0),
    ],
)
def test_traffic_factor_is_the_profile_mean_over_the_hours(start_h, end_s, factor):
    assert traffic_factor(start_h * 3600, end_s) == pytest.approx(factor)


def test_apply_traffic_rounds_each_duration():
    assert apply_traffic([[0, 100], [101, 0]], 1.25) == [[0, 125], [126, 0]]
