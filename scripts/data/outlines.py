#!/usr/bin/env python3
"""Build crates/reference/data/geo/outlines.json: simplified SVG outlines of the 101 départements.

What it reads
-------------
* ``departements-avec-outre-mer.geojson`` from the public GitHub repository
  ``gregoiredavid/france-geojson`` at commit ``5d34ee6d0140c29f785fdb047d9329f1aab58833``
  (2018-10-16; git blob ``58c4c800120385e8b28475a7252b7b6a36c9e420``, SHA-256
  ``0c331e85eef244d8014f68a4c256bb732e28776aceec53ddf849624f2eb6c163``). It holds the 101
  départements (metropolitan France and the five DROM) in WGS84 longitude/latitude, derived from
  IGN Admin Express COG 2018 (codes and names: INSEE COG 2018), simplified upstream with
  mapshaper (Visvalingam weighted, 25 %, 5 decimals). Licence: the repository's README refers
  to the terms of use of Admin Express, "Licence ouverte" (Etalab), version not stated;
  composer.json says "Licence Ouverte".
* ``crates/reference/data/geo/departements.csv`` of this repository: the set of codes that must
  be present (exactly those, no other).

How to run
----------
From the repository root, with a clone (or bare copy) of gregoiredavid/france-geojson::

    git --git-dir=/path/to/france-geojson/.git show \\
        5d34ee6d0140c29f785fdb047d9329f1aab58833:departements-avec-outre-mer.geojson \\
        > departements-avec-outre-mer.geojson
    python3 scripts/data/outlines.py departements-avec-outre-mer.geojson
    # optional: also write an SVG drawing every outline, to look at
    python3 scripts/data/outlines.py departements-avec-outre-mer.geojson \\
        --check-svg outlines-check.svg

The input's SHA-256 is checked (``--any-input`` skips the check, for a deliberate update).

It needs only the Python standard library (3.8+). The output is deterministic: running it
twice on the same input gives identical bytes (keys sorted, coordinates rounded to 0.1 unit,
no dependence on dict or set ordering).

What it does
------------
1. Projection.
   * Metropolitan France (96 départements, 2A and 2B included): Lambert-93 (EPSG:2154), i.e.
     Lambert conformal conic on GRS80, standard parallels 49° and 44°, origin 46°30'N 3°E,
     false easting 700 000 m, false northing 6 600 000 m; the ellipsoidal formulas are
     implemented below (no GIS library; checked against PROJ to within 1e-8 m). Lambert-93
     metres are then scaled uniformly into the main frame, y axis flipped (SVG y grows
     downwards).
   * Each DROM (971 Guadeloupe, 972 Martinique, 973 Guyane, 974 La Réunion, 976 Mayotte):
     a local equirectangular projection on a sphere (x = λ·cos φc, y = φ, φc the latitude of
     the centre of its bounding box), scaled to fit its own inset frame, centred, y flipped.
     Each inset has its own scale (the insets are not to scale with each other nor with
     metropolitan France).
   * Layout: view box 1000 units wide; the main frame on top, the five insets in a row below
     it (in code order), with gaps left free for labels; every drawing sits inside its frame's
     box with ``PAD`` units of padding. Frames never overlap.
2. Simplification, topology-preserving: shared boundaries are identical vertex chains in the
   source (mapshaper snaps them), so every ring is cut into arcs at junctions (vertices whose
   neighbours differ between the rings that use them); each distinct arc is simplified once
   with Douglas–Peucker in the SVG plane (tolerance ``TOLERANCE`` units) and the same result
   is used by both neighbours, so adjacent départements never get gaps or overlaps from the
   simplification. Rings without junctions (islands, enclaves) are simplified as closed rings.
3. Filtering: rings (islands or holes) whose simplified area is below ``MIN_AREA`` square
   units are dropped, except that every département keeps its largest ring.
4. Output: one SVG path string per département, one ``M x,y L x,y x,y … Z`` subpath per
   ring, absolute coordinates rounded to 0.1 unit. Holes (water such as the étang de Berre,
   enclaves such as the Enclave des papes inside the Drôme, Llívia inside the
   Pyrénées-Orientales) are kept as subpaths: draw with ``fill-rule="evenodd"``.
"""

import argparse
import colorsys
import csv
import hashlib
import json
import math
import os
import sys

SOURCE_REPO = "gregoiredavid/france-geojson"
SOURCE_COMMIT = "5d34ee6d0140c29f785fdb047d9329f1aab58833"
SOURCE_FILE = "departements-avec-outre-mer.geojson"
SOURCE_SHA256 = "0c331e85eef244d8014f68a4c256bb732e28776aceec53ddf849624f2eb6c163"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPARTEMENTS_CSV = os.path.join(ROOT, "crates", "reference", "data", "geo", "departements.csv")
OUTPUT = os.path.join(ROOT, "crates", "reference", "data", "geo", "outlines.json")

# Simplification tolerance and minimum ring area, in SVG units (view box 1000 wide).
TOLERANCE = 0.5
MIN_AREA = 1.0

# Layout of the view box (SVG units).
WIDTH = 1000
MARGIN = 10
MAIN_W = WIDTH - 2 * MARGIN       # main frame width; its height follows from the aspect ratio
GAP = 35                          # between the main frame and the row of insets (room for labels)
INSET_GAP = 15                    # between two insets
INSET_H = 170                     # height of an inset frame
PAD = 6                           # padding between a frame's box and its drawing
BOTTOM = 30                       # below the row of insets (room for labels)

DROM = ["971", "972", "973", "974", "976"]

# --- Lambert-93 (EPSG:2154): Lambert conformal conic, 2 standard parallels, GRS80 -------------

GRS80_A = 6378137.0
GRS80_F = 1.0 / 298.257222101
L93_LAT1 = 49.0
L93_LAT2 = 44.0
L93_LAT0 = 46.5
L93_LON0 = 3.0
L93_X0 = 700000.0
L93_Y0 = 6600000.0


class Lambert93:
    def __init__(self):
        self.e = math.sqrt(GRS80_F * (2.0 - GRS80_F))
        p1, p2, p0 = (math.radians(v) for v in (L93_LAT1, L93_LAT2, L93_LAT0))
        m1, m2 = self._m(p1), self._m(p2)
        t1, t2, t0 = self._t(p1), self._t(p2), self._t(p0)
        self.n = (math.log(m1) - math.log(m2)) / (math.log(t1) - math.log(t2))
        self.big_f = m1 / (self.n * t1 ** self.n)
        self.rho0 = GRS80_A * self.big_f * t0 ** self.n
        self.lon0 = math.radians(L93_LON0)

    def _m(self, phi):
        s = math.sin(phi)
        return math.cos(phi) / math.sqrt(1.0 - self.e * self.e * s * s)

    def _t(self, phi):
        s = math.sin(phi)
        return math.tan(math.pi / 4.0 - phi / 2.0) / ((1.0 - self.e * s) / (1.0 + self.e * s)) ** (self.e / 2.0)

    def __call__(self, lon, lat):
        rho = GRS80_A * self.big_f * self._t(math.radians(lat)) ** self.n
        theta = self.n * (math.radians(lon) - self.lon0)
        return (L93_X0 + rho * math.sin(theta), L93_Y0 + self.rho0 - rho * math.cos(theta))


def equirectangular(lat_c):
    k = math.cos(math.radians(lat_c))
    return lambda lon, lat: (lon * k, lat)


# --- geometry helpers -------------------------------------------------------------------------

def rings_of(geometry):
    """Polygon rings (without the repeated closing vertex) of a Polygon or MultiPolygon."""
    if geometry["type"] == "Polygon":
        polygons = [geometry["coordinates"]]
    elif geometry["type"] == "MultiPolygon":
        polygons = geometry["coordinates"]
    else:
        raise ValueError("unexpected geometry type %s" % geometry["type"])
    out = []
    for polygon in polygons:
        for ring in polygon:
            pts = [(float(p[0]), float(p[1])) for p in ring]
            if len(pts) > 1 and pts[0] == pts[-1]:
                pts.pop()
            if len(pts) >= 3:
                out.append(pts)
    return out


def bbox(points):
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def seg_dist2(p, a, b):
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    px, py = p[0] - ax, p[1] - ay
    l2 = dx * dx + dy * dy
    if l2 > 0.0:
        t = max(0.0, min(1.0, (px * dx + py * dy) / l2))
        px -= t * dx
        py -= t * dy
    return px * px + py * py


def douglas_peucker(pts, tol):
    """Open polyline; both ends kept. Iterative, deterministic."""
    n = len(pts)
    if n <= 2:
        return list(pts)
    keep = [False] * n
    keep[0] = keep[-1] = True
    tol2 = tol * tol
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        best, best_k = -1.0, -1
        for k in range(i + 1, j):
            d = seg_dist2(pts[k], pts[i], pts[j])
            if d > best:
                best, best_k = d, k
        if best_k >= 0 and best > tol2:
            keep[best_k] = True
            stack.append((i, best_k))
            stack.append((best_k, j))
    return [p for p, k in zip(pts, keep) if k]


def area(pts):
    s = 0.0
    n = len(pts)
    for i in range(n):
        x1, y1 = pts[i]
        x2, y2 = pts[(i + 1) % n]
        s += x1 * y2 - x2 * y1
    return s / 2.0


# --- topology: arcs shared between rings ------------------------------------------------------

def split_into_arcs(all_rings):
    """Map each ring (list of source vertices) to a list of arcs.

    An arc is (key, reversed): key is the canonical tuple of vertices of the arc (the smaller of
    its two directions), reversed says whether the ring walks it backwards. A ring without any
    junction is a single closed arc whose key starts at its smallest vertex.
    """
    neighbours = {}
    for ring in all_rings:
        n = len(ring)
        for i, p in enumerate(ring):
            s = neighbours.setdefault(p, set())
            s.add(ring[i - 1])
            s.add(ring[(i + 1) % n])
    junction = {p for p, s in neighbours.items() if len(s) > 2}

    result = []
    for ring in all_rings:
        n = len(ring)
        starts = [i for i, p in enumerate(ring) if p in junction]
        if not starts:
            # closed ring: canonical start and direction
            i0 = min(range(n), key=lambda i: ring[i])
            fwd = tuple(ring[i0:] + ring[:i0])
            bwd = (fwd[0],) + tuple(reversed(fwd[1:]))
            if fwd <= bwd:
                result.append([("closed", fwd, False)])
            else:
                result.append([("closed", bwd, True)])
            continue
        arcs = []
        for a, b in zip(starts, starts[1:] + [starts[0] + n]):
            seq = tuple(ring[k % n] for k in range(a, b + 1))
            rev = tuple(reversed(seq))
            if seq <= rev:
                arcs.append(("open", seq, False))
            else:
                arcs.append(("open", rev, True))
        result.append(arcs)
    return result


def simplify_closed(pts, tol):
    """Closed ring (no repeated vertex): cut at the start and the farthest vertex from it."""
    n = len(pts)
    if n <= 3:
        return list(pts)
    p0 = pts[0]
    far = max(range(1, n), key=lambda k: ((pts[k][0] - p0[0]) ** 2 + (pts[k][1] - p0[1]) ** 2, -k))
    first = douglas_peucker(pts[: far + 1], tol)
    second = douglas_peucker(list(pts[far:]) + [p0], tol)
    return first + second[1:-1]


# --- main -------------------------------------------------------------------------------------

def fmt(v):
    s = "%.1f" % v
    if s.endswith(".0"):
        s = s[:-2]
    if s == "-0":
        s = "0"
    return s


def path_of(rings):
    parts = []
    for ring in rings:
        coords = ["%s,%s" % (fmt(x), fmt(y)) for x, y in ring]
        parts.append("M" + coords[0] + "L" + " ".join(coords[1:]) + "Z")
    return "".join(parts)


def rounded_ring(ring):
    out = []
    for x, y in ring:
        p = (round(x, 1), round(y, 1))
        if not out or out[-1] != p:
            out.append(p)
    while len(out) > 1 and out[0] == out[-1]:
        out.pop()
    return out


def num(v):
    """A box coordinate: an int when integral, else rounded to 0.1."""
    v = round(v, 1)
    return int(v) if v == int(v) else v


def build(features, codes, names):
    proj_l93 = Lambert93()
    src_rings = {}
    for f in features:
        code = f["properties"]["code"]
        if code in src_rings:
            raise SystemExit("duplicate code %s in the source" % code)
        src_rings[code] = rings_of(f["geometry"])
    missing = sorted(set(codes) - set(src_rings))
    extra = sorted(set(src_rings) - set(codes))
    if missing or extra:
        raise SystemExit("codes differ from departements.csv: missing %s, extra %s" % (missing, extra))

    metro = sorted(c for c in codes if c not in DROM)
    # Lambert-93 extent of metropolitan France -> main frame
    l93 = {c: [[proj_l93(lon, lat) for lon, lat in r] for r in src_rings[c]] for c in metro}
    x0, y0, x1, y1 = bbox([p for c in metro for r in l93[c] for p in r])
    scale = (MAIN_W - 2 * PAD) / (x1 - x0)
    main_h = int(math.ceil((y1 - y0) * scale + 2 * PAD))
    main_box = [MARGIN, MARGIN, MAIN_W, main_h]
    off_y = MARGIN + (main_h - (y1 - y0) * scale) / 2.0

    def to_main(p):
        return (MARGIN + PAD + (p[0] - x0) * scale, off_y + (y1 - p[1]) * scale)

    projected = {}  # code -> list of rings in SVG units, parallel to src_rings[code]
    for c in metro:
        projected[c] = [[to_main(p) for p in r] for r in l93[c]]

    inset_y = MARGIN + main_h + GAP
    inset_w = (MAIN_W - (len(DROM) - 1) * INSET_GAP) / len(DROM)
    frames = [{"id": "metropole", "box": main_box}]
    for i, c in enumerate(DROM):
        bx = MARGIN + i * (inset_w + INSET_GAP)
        box = [num(bx), inset_y, num(inset_w), INSET_H]
        frames.append({"id": c, "box": box, "label": names[c]})
        lon0, lat0, lon1, lat1 = bbox([p for r in src_rings[c] for p in r])
        proj = equirectangular((lat0 + lat1) / 2.0)
        local = [[proj(lon, lat) for lon, lat in r] for r in src_rings[c]]
        u0, v0, u1, v1 = bbox([p for r in local for p in r])
        s = min((inset_w - 2 * PAD) / (u1 - u0), (INSET_H - 2 * PAD) / (v1 - v0))
        ox = bx + (inset_w - (u1 - u0) * s) / 2.0
        oy = inset_y + (INSET_H - (v1 - v0) * s) / 2.0
        projected[c] = [[(ox + (u - u0) * s, oy + (v1 - v) * s) for u, v in r] for r in local]

    view_box = [0, 0, WIDTH, int(math.ceil(inset_y + INSET_H + BOTTOM))]

    # source vertex -> SVG point, per ring (a vertex has the same projection in every ring of
    # the same group; metropole and each DROM have disjoint vertices)
    order = metro + DROM
    all_rings, owners, where = [], [], {}
    for c in order:
        for r_src, r_svg in zip(src_rings[c], projected[c]):
            for p, q in zip(r_src, r_svg):
                where[p] = q
            all_rings.append(r_src)
            owners.append(c)

    arcs_of = split_into_arcs(all_rings)
    cache = {}
    out_rings = {c: [] for c in order}
    for owner, arcs in zip(owners, arcs_of):
        pts = []
        for kind, key, rev in arcs:
            simp = cache.get((kind, key))
            if simp is None:
                svg = [where[p] for p in key]
                simp = simplify_closed(svg, TOLERANCE) if kind == "closed" else douglas_peucker(svg, TOLERANCE)
                cache[(kind, key)] = simp
            seq = list(reversed(simp)) if rev else list(simp)
            if kind == "closed":
                pts.extend(seq)
            else:
                pts.extend(seq[:-1])  # the next arc starts with this arc's last vertex
        ring = rounded_ring(pts)
        if len(ring) >= 3:
            out_rings[owner].append(ring)

    departements = {}
    stats = {}
    for c in order:
        rings = out_rings[c]
        if not rings:
            raise SystemExit("département %s lost all its rings" % c)
        largest = max(range(len(rings)), key=lambda i: (abs(area(rings[i])), -i))
        kept = [r for i, r in enumerate(rings) if i == largest or abs(area(r)) >= MIN_AREA]
        departements[c] = path_of(kept)
        stats[c] = (len(rings), len(kept), sum(len(r) for r in kept))
    return view_box, frames, departements, stats


def read_codes():
    with open(DEPARTEMENTS_CSV, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["code"] for r in rows], {r["code"]: r["name"] for r in rows}


def check_svg(doc):
    vb = doc["view_box"]
    lines = [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="%d %d %d %d" width="%d" height="%d">'
        % (vb[0], vb[1], vb[2], vb[3], vb[2], vb[3]),
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for fr in doc["frames"]:
        x, y, w, h = fr["box"]
        lines.append('<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#c00" '
                     'stroke-width="0.6" stroke-dasharray="4 3"/>' % (x, y, w, h))
        if "label" in fr:
            lines.append('<text x="%s" y="%s" font-family="sans-serif" font-size="14">%s</text>'
                         % (x, y - 5, fr["label"]))
    for i, code in enumerate(sorted(doc["departements"])):
        r, g, b = colorsys.hls_to_rgb(((i * 137) % 360) / 360.0, 0.8, 0.45)
        colour = "#%02x%02x%02x" % (int(r * 255), int(g * 255), int(b * 255))
        lines.append('<path d="%s" fill="%s" fill-rule="evenodd" stroke="#333" '
                     'stroke-width="0.4"><title>%s</title></path>' % (doc["departements"][code], colour, code))
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("geojson", help="path to %s (commit %s of %s)" % (SOURCE_FILE, SOURCE_COMMIT, SOURCE_REPO))
    ap.add_argument("-o", "--output", default=OUTPUT)
    ap.add_argument("--check-svg", help="also write an SVG drawing every outline")
    ap.add_argument("--any-input", action="store_true", help="do not check the input's SHA-256")
    args = ap.parse_args()

    with open(args.geojson, "rb") as fh:
        raw = fh.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256 and not args.any_input:
        raise SystemExit("%s: SHA-256 %s is not the expected %s (use --any-input to override)"
                         % (args.geojson, digest, SOURCE_SHA256))
    features = json.loads(raw.decode("utf-8"))["features"]

    codes, names = read_codes()
    view_box, frames, departements, stats = build(features, codes, names)
    doc = {
        "source": "IGN Admin Express COG 2018 (codes and names: INSEE COG 2018), via "
                  "github.com/%s commit %s, file %s" % (SOURCE_REPO, SOURCE_COMMIT, SOURCE_FILE),
        "licence": "Licence Ouverte / Open Licence (Etalab), the terms of IGN Admin Express "
                   "(version not stated upstream); attribution: IGN - Admin Express COG 2018, via "
                   "gregoiredavid/france-geojson; simplified and projected by this project",
        "projection": "Metropolitan France: Lambert-93 (EPSG:2154, Lambert conformal conic, GRS80, "
                      "lat_1=49, lat_2=44, lat_0=46.5, lon_0=3, x_0=700000, y_0=6600000) scaled "
                      "uniformly into frame 'metropole', y flipped. Each overseas departement "
                      "(971, 972, 973, 974, 976): local equirectangular projection (x = lon * "
                      "cos(lat_c), y = lat, lat_c the centre latitude of its bounding box) scaled "
                      "to fit its own frame, y flipped; each inset has its own scale. Drawings "
                      "sit inside their frame box with %s units of padding. Simplified "
                      "with Douglas-Peucker at %s unit on shared arcs (topology kept), rings under "
                      "%s square unit dropped, coordinates rounded to 0.1 unit." % (PAD, TOLERANCE, MIN_AREA),
        "fill_rule": "evenodd",
        "view_box": view_box,
        "frames": frames,
        "departements": departements,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    with open(args.output, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    if args.check_svg:
        with open(args.check_svg, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(check_svg(doc))
    total_src = sum(s[0] for s in stats.values())
    total_kept = sum(s[1] for s in stats.values())
    total_pts = sum(s[2] for s in stats.values())
    print("%d départements, %d rings (%d after dropping small ones), %d vertices, %d bytes -> %s"
          % (len(departements), total_src, total_kept, total_pts, len(text.encode("utf-8")), args.output),
          file=sys.stderr)


if __name__ == "__main__":
    main()
