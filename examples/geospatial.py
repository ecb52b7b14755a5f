"""Geospatial analysis: count a large set of points into districts (points in polygons).

The map is the unit square; each district is a polygon (a triangle, hexagons, an L-shaped
lot), whose area the shoelace formula gives exactly. Each item generates one tile's worth of
uniformly scattered points (``seed=``: reproducible) and counts, with a vectorised
ray-casting test in numpy, how many fall in each district; ``imap_unordered`` adds the tiles'
counts up as they land. Each district's share of the points must approach its area.

Run: .venv/bin/python examples/geospatial.py [--backend fargate] [--size 200]
"""

import math

import numpy as np
from _common import cluster_options, make_parser, print_summary, run

import starburst

POINTS_PER_TILE = 50_000


def hexagon(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """A regular hexagon of circumradius ``r`` around ``(cx, cy)``."""
    return [
        (cx + r * math.cos(k * math.pi / 3), cy + r * math.sin(k * math.pi / 3)) for k in range(6)
    ]


DISTRICTS = {
    "harbour": [(0.05, 0.05), (0.45, 0.05), (0.05, 0.4)],
    "old town": hexagon(0.7, 0.25, 0.18),
    "uptown": hexagon(0.3, 0.7, 0.15),
    "rail yards": [(0.55, 0.55), (0.95, 0.55), (0.95, 0.95), (0.8, 0.95), (0.8, 0.7), (0.55, 0.7)],
}


def shoelace_area(polygon: list[tuple[float, float]]) -> float:
    """The exact area of a simple polygon."""
    xs, ys = zip(*polygon, strict=True)
    return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2


def inside(xs: np.ndarray, ys: np.ndarray, polygon: list[tuple[float, float]]) -> np.ndarray:
    """Which points lie inside ``polygon``: even-odd ray casting, all points at once."""
    result = np.zeros(xs.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        crosses = (y1 > ys) != (y2 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        result ^= crosses & (xs < x_at)
    return result


def count_tile(tile: int) -> dict[str, int]:
    """Scatter one tile's points over the map; count them per district."""
    xs, ys = np.random.random(POINTS_PER_TILE), np.random.random(POINTS_PER_TILE)
    return {name: int(inside(xs, ys, polygon).sum()) for name, polygon in DISTRICTS.items()}


def main() -> None:
    parser = make_parser(__doc__, size=20, size_help=f"tiles of {POINTS_PER_TILE:,} points")
    args = parser.parse_args()
    totals = dict.fromkeys(DISTRICTS, 0)
    for counts in starburst.imap_unordered(
        count_tile, range(args.size), seed=7, **cluster_options(args)
    ):
        for name, count in counts.items():
            totals[name] += count

    points = args.size * POINTS_PER_TILE
    worst = 0.0  # the largest gap between share and area, in standard errors
    for name, polygon in DISTRICTS.items():
        area, share = shoelace_area(polygon), totals[name] / points
        standard_error = math.sqrt(area * (1 - area) / points)
        worst = max(worst, abs(share - area) / standard_error)
        print(f"{name:>10}: {share:.4f} of the points, area {area:.4f} (±{standard_error:.4f})")
    print(f"every share within {worst:.2f} standard errors of its area (expect under 4)")
    print_summary(points=points, districts=len(DISTRICTS), worst_standard_errors=worst)


if __name__ == "__main__":
    run(main)
