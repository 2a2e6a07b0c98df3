"""`local-3d`: a GLB mesh shaped by the prompt and seed, built with numpy and trimesh.

The prompt's first shape word picks the object (`SHAPE_WORDS`: a tree, a rock, a vase,
a creature, a crystal cluster, a mushroom; anything else becomes an abstract sculpture
on a plinth). Every object is assembled from two primitives, a subdivided icosphere
and a surface of revolution (a lathe), which are deformed by a smooth 3D noise field
(a sum of random plane waves, so it is cheap and deterministic) and placed with the
seed's random proportions. `detail` 1 to 5 sets the subdivision: each step quadruples the
faces of a sphere and doubles both resolutions of a lathe (detail 3 makes several
thousand faces).

Materials are glTF PBR (metallic-roughness). Base colours come from the prompt's colour
words through `art.palette`, the same palette `local-image` paints with; material words
(`gold`, `glass`, `matte`…) set metalness and roughness. Each material's parts become one
mesh, so a file holds a few meshes with smooth vertex normals (crystals are flat-shaded:
their faces keep their own vertices).

The model is Y-up in metres, standing on the ground plane (y = 0), about 1.5 m tall.
Pure numpy work in a worker thread; the same prompt, seed and detail give the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import numpy as np
import trimesh
from numpy.typing import NDArray
from trimesh.exchange.gltf import export_glb
from trimesh.visual import TextureVisuals
from trimesh.visual.material import PBRMaterial

from gengate.domain.money import Price, PriceUnit
from gengate.providers.art import HUE_WORDS, Cancelled, palette
from gengate.providers.base import GenerationContext, GenerationResult, Provider, prompt_schema
from gengate.providers.local_image import default_seed

GLB_CONTENT_TYPE: Final = "model/gltf-binary"
MIN_DETAIL: Final = 1
MAX_DETAIL: Final = 5
DEFAULT_DETAIL: Final = 3

SHAPE_WORDS: Final[dict[str, frozenset[str]]] = {
    "tree": frozenset(
        {"tree", "trees", "forest", "oak", "pine", "palm", "bush", "plant", "willow", "birch"}
    ),
    "rock": frozenset(
        {"rock", "rocks", "stone", "stones", "boulder", "pebble", "asteroid", "meteor", "cliff"}
    ),
    "vase": frozenset(
        {"vase", "pot", "jar", "urn", "bottle", "vessel", "amphora", "jug", "pottery", "bowl"}
    ),
    "creature": frozenset(
        {
            *("creature", "animal", "monster", "beast", "dragon", "dog", "cat", "horse"),
            *("cow", "critter", "alien", "dinosaur", "pet", "fox", "wolf", "pig", "lizard"),
        }
    ),
    "crystal": frozenset(
        {"crystal", "crystals", "gem", "gems", "diamond", "jewel", "quartz", "amethyst", "shard"}
    ),
    "mushroom": frozenset({"mushroom", "mushrooms", "fungus", "toadstool", "shroom"}),
}
DEFAULT_SHAPE: Final = "sculpture"
SHAPES: Final = (*SHAPE_WORDS, DEFAULT_SHAPE)
# The colour word a shape takes when the prompt names no colour.
SHAPE_COLOUR_WORD: Final = {
    "tree": "forest",
    "crystal": "violet",
    "mushroom": "red",
    "rock": "desert",
}
METAL_WORDS: Final = frozenset(
    {"metal", "metallic", "gold", "golden", "silver", "bronze", "copper", "steel", "chrome"}
    | {"iron", "brass", "robot", "robotic"}
)
GLOSSY_WORDS: Final = frozenset(
    {"glass", "glossy", "shiny", "polished", "porcelain", "ceramic", "wet", "glazed", "ice"}
)
MATTE_WORDS: Final = frozenset({"matte", "rough", "dusty", "clay", "wooden", "wood", "chalk"})

Vertices = NDArray[np.float64]
Faces = NDArray[np.int64]
Colour = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Surface:
    """A material: a glTF PBR metallic-roughness description."""

    name: str
    colour: Colour  # linear-ish RGB in [0, 1], as glTF's baseColorFactor
    metallic: float
    roughness: float


@dataclass(frozen=True, slots=True)
class Part:
    vertices: Vertices
    faces: Faces
    surface: str  # a Surface name
    flat: bool = False  # faceted: every face gets its own vertices


@dataclass(frozen=True, slots=True)
class Sculpt:
    """Everything a shape builder needs: the randomness, the resolution, the colours."""

    rng: np.random.Generator
    detail: int
    colours: NDArray[np.float32]  # the palette, darkest first
    words: frozenset[str]

    @property
    def sphere_subdivisions(self) -> int:
        return self.detail

    @property
    def segments(self) -> int:
        """Points around a lathe."""
        return 6 * (1 << self.detail)

    @property
    def rows(self) -> int:
        """Rings up a lathe."""
        return 4 * (1 << self.detail)


def _words(prompt: str) -> list[str]:
    return re.findall(r"[a-z]+", prompt.lower())


def choose_shape(prompt: str) -> str:
    """The shape the prompt's first shape word names, or the default sculpture."""
    for word in _words(prompt):
        for shape, words in SHAPE_WORDS.items():
            if word in words:
                return shape
    return DEFAULT_SHAPE


def _rng(prompt: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"local-3d\x00{prompt}\x00{seed}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


# -- geometry ---------------------------------------------------------------------------


class Noise:
    """A smooth random field on 3D points: a sum of plane waves over a few octaves,
    scaled to about unit standard deviation."""

    def __init__(
        self, rng: np.random.Generator, *, frequency: float, octaves: int = 3, waves: int = 12
    ) -> None:
        count = waves * octaves
        directions = rng.normal(size=(count, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        octave = np.repeat(np.arange(octaves), waves)
        frequencies = frequency * 2.0**octave * rng.uniform(0.8, 1.25, count)
        self._k = directions * frequencies[:, None]
        self._phases = rng.uniform(0, 2 * np.pi, count)
        amplitudes = 0.55**octave
        self._amplitudes = amplitudes / math.sqrt(float(np.sum(amplitudes**2)) / 2)

    def __call__(self, points: Vertices) -> NDArray[np.float64]:
        values: NDArray[np.float64] = np.sin(points @ self._k.T + self._phases) @ self._amplitudes
        return values


def icosphere(subdivisions: int) -> tuple[Vertices, Faces]:
    """A unit sphere: 20·4^subdivisions faces."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(sphere.vertices, np.float64), np.asarray(sphere.faces, np.int64)


def blob(
    sculpt: Sculpt,
    *,
    centre: tuple[float, float, float],
    radii: tuple[float, float, float],
    roughness: float,
    frequency: float = 1.4,
    subdivisions: int | None = None,
) -> tuple[Vertices, Faces]:
    """An ellipsoid whose surface the noise pushes in and out by `roughness`."""
    unit, faces = icosphere(subdivisions or sculpt.sphere_subdivisions)
    noise = Noise(sculpt.rng, frequency=frequency)
    scale = np.clip(1.0 + roughness * noise(unit), 0.4, 1.8)
    vertices = unit * scale[:, None] * np.asarray(radii) + np.asarray(centre)
    return vertices, faces


def lathe(
    radii: NDArray[np.float64],
    heights: NDArray[np.float64],
    segments: int,
    *,
    around: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None,
    bottom: float | None = None,
    top: float | None = None,
) -> tuple[Vertices, Faces]:
    """A closed surface of revolution about the y axis: ring i has radius `radii[i]` at
    height `heights[i]`, times `around(angles)` (one factor per point of the ring, to
    make it fluted or faceted). Both ends are closed by a fan to a point on the axis at
    `bottom` / `top` (the end rings' heights by default; beyond them, a point)."""
    angles = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    factor = around(angles) if around is not None else np.ones(segments)
    rows = len(radii)
    ring_x = np.cos(angles) * factor
    ring_z = np.sin(angles) * factor
    rings = np.stack(
        [
            radii[:, None] * ring_x[None, :],
            np.broadcast_to(heights[:, None], (rows, segments)),
            radii[:, None] * ring_z[None, :],
        ],
        axis=-1,
    ).reshape(-1, 3)
    ends = np.array(
        [
            [0.0, heights[0] if bottom is None else bottom, 0.0],
            [0.0, heights[-1] if top is None else top, 0.0],
        ]
    )
    vertices = np.concatenate([rings, ends])
    bottom_index, top_index = rows * segments, rows * segments + 1

    j = np.arange(segments)
    nxt = (j + 1) % segments
    i = np.arange(rows - 1)[:, None]
    a, b = i * segments + j, i * segments + nxt
    c, d = a + segments, b + segments
    # Counter-clockwise seen from outside: normals point away from the axis.
    sides = np.concatenate(
        [np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)]
    )
    last = (rows - 1) * segments
    caps = np.concatenate(
        [
            np.stack([np.full(segments, bottom_index), j, nxt], -1),
            np.stack([np.full(segments, top_index), last + nxt, last + j], -1),
        ]
    )
    return vertices, np.concatenate([sides, caps]).astype(np.int64)


def _rotation(axis: tuple[float, float, float], angle: float) -> NDArray[np.float64]:
    """The matrix turning points by `angle` radians about `axis` (Rodrigues' formula)."""
    x, y, z = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.asarray(
        np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * (cross @ cross), np.float64
    )


def _place(
    vertices: Vertices, *, rotation: NDArray[np.float64] | None = None, offset: Any = (0, 0, 0)
) -> Vertices:
    moved = vertices @ rotation.T if rotation is not None else vertices
    return np.asarray(moved + np.asarray(offset, np.float64), np.float64)


def _profile(
    t: NDArray[np.float64], knots: list[float], values: list[float]
) -> NDArray[np.float64]:
    """A smooth curve through (knots, values): smoothstep between neighbouring knots, so
    the profile is level at every knot (bellies, necks and lips read as such)."""
    index = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
    k0, k1 = np.asarray(knots)[index], np.asarray(knots)[index + 1]
    v0, v1 = np.asarray(values)[index], np.asarray(values)[index + 1]
    u = np.clip((t - k0) / (k1 - k0), 0.0, 1.0)
    return np.asarray(v0 + (v1 - v0) * u * u * (3 - 2 * u), np.float64)


# -- shapes -----------------------------------------------------------------------------


def _limb(
    sculpt: Sculpt,
    *,
    length: float,
    base_radius: float,
    tip_radius: float,
    bend: tuple[float, float] = (0.0, 0.0),
    pointed: bool = False,
    segments: int | None = None,
) -> tuple[Vertices, Faces]:
    """A tapering tube standing on the origin, bent by `bend` (x, z) at its tip."""
    t = np.linspace(0.0, 1.0, max(4, sculpt.rows // 2) + 1)
    radii = base_radius + (tip_radius - base_radius) * t
    vertices, faces = lathe(
        radii,
        t * length,
        segments or max(8, sculpt.segments // 2),
        top=length * 1.08 if pointed else None,
    )
    # Bend: shift each point sideways by the square of its height fraction.
    along = np.clip(vertices[:, 1] / length, 0.0, 1.2) ** 2
    vertices[:, 0] += bend[0] * along
    vertices[:, 2] += bend[1] * along
    return vertices, faces


def build_tree(sculpt: Sculpt) -> list[Part]:
    rng = sculpt.rng
    height = float(rng.uniform(0.8, 1.1))
    bend = (float(rng.uniform(-0.15, 0.15)), float(rng.uniform(-0.15, 0.15)))
    t = np.linspace(0.0, 1.0, sculpt.rows + 1)
    # Tapering, with roots flaring at the foot.
    radii = 0.12 * (1 - 0.5 * t) + 0.09 * np.exp(-t * 10)
    trunk, trunk_faces = lathe(radii, t * height, sculpt.segments)
    bark = Noise(rng, frequency=6.0, octaves=2)
    lateral = np.hypot(trunk[:, 0], trunk[:, 2])
    grain = 1.0 + 0.06 * bark(trunk) * (lateral > 1e-9)
    trunk[:, 0] *= grain
    trunk[:, 2] *= grain
    along = (trunk[:, 1] / height) ** 2
    trunk[:, 0] += bend[0] * along
    trunk[:, 2] += bend[1] * along
    parts = [Part(trunk, trunk_faces, "bark")]
    crown = np.array([bend[0], height + 0.25, bend[1]])
    for index in range(int(rng.integers(3, 6))):
        size = float(rng.uniform(0.32, 0.5)) * (1.0 if index == 0 else 0.8)
        offset = crown + (rng.uniform(-0.3, 0.3, 3) * np.array([1.0, 0.6, 1.0]) if index else 0.0)
        vertices, faces = blob(
            sculpt,
            centre=(float(offset[0]), float(offset[1]), float(offset[2])),
            radii=(size, size * 0.85, size),
            roughness=0.12,
            frequency=2.5,
        )
        parts.append(Part(vertices, faces, "leaves"))
    return parts


def build_rock(sculpt: Sculpt) -> list[Part]:
    rng = sculpt.rng
    radii = (
        float(rng.uniform(0.55, 0.8)),
        float(rng.uniform(0.4, 0.6)),
        float(rng.uniform(0.5, 0.75)),
    )
    vertices, faces = blob(sculpt, centre=(0, 0, 0), radii=radii, roughness=0.2, frequency=1.1)
    # Chipped facets: a second, sharper field folded with abs() gives ridges.
    ridges = Noise(rng, frequency=3.0, octaves=2)
    direction = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    vertices -= direction * (0.05 * np.abs(ridges(vertices)))[:, None]
    # Rest on a flat underside.
    floor = -0.55 * radii[1]
    vertices[:, 1] = np.maximum(vertices[:, 1], floor)
    vertices[:, 1] -= floor
    return [Part(vertices, faces, "stone")]


def build_vase(sculpt: Sculpt) -> list[Part]:
    rng = sculpt.rng
    height = float(rng.uniform(1.1, 1.6))
    foot, belly, neck, lip = (
        float(rng.uniform(0.2, 0.3)),
        float(rng.uniform(0.4, 0.6)),
        float(rng.uniform(0.1, 0.2)),
        float(rng.uniform(0.16, 0.28)),
    )
    belly_at = float(rng.uniform(0.3, 0.55))
    neck_at = float(rng.uniform(0.72, 0.85))
    knots = [0.0, 0.06, belly_at, neck_at, 0.97, 1.0]
    values = [foot, foot * 1.1, belly, neck, lip, lip * 0.94]
    t = np.linspace(0.0, 1.0, sculpt.rows + 1)
    radii = _profile(t, knots, values)
    flutes = int(rng.choice([0, 0, 8, 12, 16]))
    depth = float(rng.uniform(0.02, 0.05))

    def fluting(angles: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray(1.0 + depth * np.cos(flutes * angles), np.float64)

    vertices, faces = lathe(
        radii,
        t * height,
        sculpt.segments,
        around=fluting if flutes else None,
        # The mouth dips in: the top closes a little below the lip.
        top=height * 0.93,
    )
    return [Part(vertices, faces, "glaze")]


def build_creature(sculpt: Sculpt) -> list[Part]:
    rng = sculpt.rng
    leg_length = float(rng.uniform(0.3, 0.5))
    body_radii = (
        float(rng.uniform(0.3, 0.42)),
        float(rng.uniform(0.26, 0.34)),
        float(rng.uniform(0.5, 0.7)),
    )
    body_y = leg_length + body_radii[1] * 0.7
    body, body_faces = blob(
        sculpt, centre=(0, body_y, 0), radii=body_radii, roughness=0.06, frequency=1.8
    )
    parts = [Part(body, body_faces, "skin")]
    head_radius = float(rng.uniform(0.2, 0.28))
    head_centre = np.array([0.0, body_y + body_radii[1] * 0.8, body_radii[2] * 0.95])
    head, head_faces = blob(
        sculpt,
        centre=(float(head_centre[0]), float(head_centre[1]), float(head_centre[2])),
        radii=(head_radius, head_radius * 0.9, head_radius * 1.1),
        roughness=0.04,
        frequency=2.0,
    )
    parts.append(Part(head, head_faces, "skin"))
    small = max(1, sculpt.detail - 1)
    for side in (-1.0, 1.0):
        eye, eye_faces = icosphere(small)
        centre = head_centre + np.array([side * head_radius * 0.45, head_radius * 0.3, 0.0])
        centre[2] += head_radius * 0.85
        parts.append(Part(_place(eye * head_radius * 0.2, offset=centre), eye_faces, "eyes"))
        horn, horn_faces = _limb(
            sculpt,
            length=head_radius * float(rng.uniform(0.8, 1.4)),
            base_radius=head_radius * 0.22,
            tip_radius=head_radius * 0.03,
            bend=(side * head_radius * 0.4, -head_radius * 0.3),
            pointed=True,
        )
        top = head_centre + np.array([side * head_radius * 0.45, head_radius * 0.75, 0.0])
        parts.append(Part(_place(horn, offset=top), horn_faces, "horns"))
    for x in (-1.0, 1.0):
        for z in (-1.0, 1.0):
            leg, leg_faces = _limb(
                sculpt,
                length=body_y,
                base_radius=0.07,
                tip_radius=0.1,
                bend=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04))),
            )
            foot = (x * body_radii[0] * 0.6, 0.0, z * body_radii[2] * 0.55)
            parts.append(Part(_place(leg, offset=foot), leg_faces, "skin"))
    tail, tail_faces = _limb(
        sculpt,
        length=float(rng.uniform(0.4, 0.7)),
        base_radius=0.08,
        tip_radius=0.015,
        bend=(float(rng.uniform(-0.2, 0.2)), 0.0),
        pointed=True,
    )
    tilt = _rotation((1.0, 0.0, 0.0), -float(rng.uniform(1.9, 2.4)))
    root = (0.0, body_y + body_radii[1] * 0.3, -body_radii[2] * 0.85)
    parts.append(Part(_place(tail, rotation=tilt, offset=root), tail_faces, "skin"))
    return parts


def _hexagon(rotation: float) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
    """Radius factors that turn a ring into a regular hexagon (flat sides, unit corners)."""
    sector = np.pi / 3

    def factor(angles: NDArray[np.float64]) -> NDArray[np.float64]:
        local = np.mod(angles + rotation, sector) - sector / 2
        return np.asarray(np.cos(sector / 2) / np.cos(local), np.float64)

    return factor


def build_crystal(sculpt: Sculpt) -> list[Part]:
    rng = sculpt.rng
    base, base_faces = blob(
        sculpt, centre=(0, 0.05, 0), radii=(0.55, 0.22, 0.5), roughness=0.25, frequency=1.6
    )
    base[:, 1] = np.maximum(base[:, 1], 0.0)
    parts = [Part(base, base_faces, "stone")]
    # Facets stay planar whatever the resolution: more points per side, same hexagon.
    segments = 6 * 2 ** max(0, sculpt.detail - 1)
    # Flat sides need no rings between their ends; a few keep the faces well shaped.
    rows = 1 << sculpt.detail
    for index in range(int(rng.integers(3, 7))):
        length = float(rng.uniform(0.6, 1.2)) * (1.0 if index == 0 else 0.75)
        radius = float(rng.uniform(0.08, 0.15))
        t = np.linspace(0.0, 1.0, rows + 1)
        vertices, faces = lathe(
            np.full_like(t, radius),
            t * length,
            segments,
            around=_hexagon(float(rng.uniform(0, np.pi / 3))),
            top=length + radius * 2.2,
        )
        if index == 0:
            rotation = _rotation((1.0, 0.0, 0.0), float(rng.uniform(-0.15, 0.15)))
            offset = np.zeros(3)
        else:
            axis = (float(rng.uniform(-1, 1)), 0.0, float(rng.uniform(-1, 1)))
            rotation = _rotation(axis, float(rng.uniform(0.35, 0.8)))
            offset = np.array([rng.uniform(-0.25, 0.25), 0.0, rng.uniform(-0.25, 0.25)])
        parts.append(
            Part(_place(vertices, rotation=rotation, offset=offset), faces, "crystal", flat=True)
        )
    return parts


def build_mushroom(sculpt: Sculpt) -> list[Part]:
    rng = sculpt.rng
    stem_height = float(rng.uniform(0.6, 0.9))
    bend = (float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.12, 0.12)))
    stem, stem_faces = _limb(
        sculpt,
        length=stem_height,
        base_radius=float(rng.uniform(0.12, 0.16)),
        tip_radius=float(rng.uniform(0.08, 0.11)),
        bend=bend,
        segments=sculpt.segments,
    )
    parts = [Part(stem, stem_faces, "stem")]
    cap_radius = float(rng.uniform(0.45, 0.65))
    cap_height = float(rng.uniform(0.3, 0.5))
    phi = np.linspace(0.0, np.pi / 2 * 0.97, sculpt.rows + 1)
    cap_base = stem_height - 0.05
    cap, cap_faces = lathe(
        cap_radius * np.cos(phi),
        cap_base + cap_height * np.sin(phi),
        sculpt.segments,
        bottom=cap_base + 0.08,  # the gills' underside rises toward the stem
        top=cap_base + cap_height,
    )
    # The cap sits on the stem's bent tip.
    tip = np.array([bend[0], 0.0, bend[1]])
    parts.append(Part(_place(cap, offset=tip), cap_faces, "cap"))
    small = max(1, sculpt.detail - 1)
    for _ in range(int(rng.integers(5, 10))):
        angle = float(rng.uniform(0, 2 * np.pi))
        elevation = float(rng.uniform(0.25, 1.2))
        centre = tip + np.array(
            [
                cap_radius * np.cos(elevation) * np.cos(angle),
                cap_base + cap_height * np.sin(elevation),
                cap_radius * np.cos(elevation) * np.sin(angle),
            ]
        )
        # The cap's outward normal there (an ellipsoid's: the point over its radii²).
        normal = np.array(
            [
                np.cos(elevation) * np.cos(angle) / cap_radius,
                np.sin(elevation) / cap_height,
                np.cos(elevation) * np.sin(angle) / cap_radius,
            ]
        )
        normal /= np.linalg.norm(normal)
        # Lay the flattened spot on the surface: turn its y axis onto the normal.
        axis = np.cross([0.0, 1.0, 0.0], normal)
        turn = math.acos(float(np.clip(normal[1], -1.0, 1.0)))
        rotation = (
            _rotation((float(axis[0]), float(axis[1]), float(axis[2])), turn)
            if np.linalg.norm(axis) > 1e-9
            else np.eye(3)
        )
        spot, spot_faces = icosphere(small)
        size = float(rng.uniform(0.04, 0.08))
        flattened = spot * [size, size * 0.35, size]
        parts.append(Part(_place(flattened, rotation=rotation, offset=centre), spot_faces, "spots"))
    return parts


def build_sculpture(sculpt: Sculpt) -> list[Part]:
    rng = sculpt.rng
    plinth_height = 0.25
    t = np.linspace(0.0, 1.0, max(4, sculpt.rows // 4) + 1)
    plinth, plinth_faces = lathe(
        np.full_like(t, 0.42), t * plinth_height, 4, around=lambda a: np.ones_like(a)
    )
    plinth = _place(plinth, rotation=_rotation((0.0, 1.0, 0.0), np.pi / 4))
    radius = float(rng.uniform(0.45, 0.6))
    form, form_faces = blob(
        sculpt,
        centre=(0, plinth_height + radius * 1.25, 0),
        radii=(radius, radius * float(rng.uniform(1.1, 1.6)), radius),
        roughness=float(rng.uniform(0.2, 0.35)),
        frequency=float(rng.uniform(0.9, 1.6)),
    )
    twist = float(rng.uniform(-1.5, 1.5))
    heights = form[:, 1] - plinth_height
    cos_t, sin_t = np.cos(twist * heights), np.sin(twist * heights)
    x, z = form[:, 0].copy(), form[:, 2].copy()
    form[:, 0], form[:, 2] = x * cos_t - z * sin_t, x * sin_t + z * cos_t
    form[:, 1] = np.maximum(form[:, 1], plinth_height)
    return [Part(plinth, plinth_faces, "plinth", flat=True), Part(form, form_faces, "body")]


BUILDERS: Final[dict[str, Callable[[Sculpt], list[Part]]]] = {
    "tree": build_tree,
    "rock": build_rock,
    "vase": build_vase,
    "creature": build_creature,
    "crystal": build_crystal,
    "mushroom": build_mushroom,
    "sculpture": build_sculpture,
}


# -- materials --------------------------------------------------------------------------


def _finish(words: frozenset[str], roughness: float) -> tuple[float, float]:
    """(metallic, roughness) of the main material, from the prompt's material words."""
    if words & METAL_WORDS:
        return 1.0, 0.3
    if words & GLOSSY_WORDS:
        return 0.0, 0.15
    if words & MATTE_WORDS:
        return 0.0, 0.95
    return 0.0, roughness


def _tone(colour: NDArray[np.float32], *, saturation: float = 1.0, value: float = 1.0) -> Colour:
    grey = float(colour.mean())
    mixed = grey + (colour - grey) * saturation
    clipped = np.clip(mixed * value, 0.0, 1.0)
    return (float(clipped[0]), float(clipped[1]), float(clipped[2]))


def surfaces(shape: str, sculpt: Sculpt) -> dict[str, Surface]:
    colours, words = sculpt.colours, sculpt.words
    main, light = colours[3], colours[4]
    metallic, roughness = _finish(words, 0.55)
    own = {
        "tree": [
            Surface("bark", (0.3, 0.19, 0.11), 0.0, 0.9),
            Surface("leaves", _tone(main), metallic, max(roughness, 0.6)),
        ],
        "rock": [Surface("stone", _tone(main, saturation=0.35), metallic, max(roughness, 0.85))],
        "vase": [Surface("glaze", _tone(main), metallic, min(roughness, 0.3))],
        "creature": [
            Surface("skin", _tone(main), metallic, roughness),
            Surface("eyes", (0.02, 0.02, 0.03), 0.0, 0.05),
            Surface("horns", _tone(light, saturation=0.3, value=1.1), 0.0, 0.4),
        ],
        "crystal": [
            Surface("stone", _tone(colours[1], saturation=0.3), 0.0, 0.9),
            Surface("crystal", _tone(light), metallic, min(roughness, 0.08)),
        ],
        "mushroom": [
            Surface("stem", (0.92, 0.88, 0.78), 0.0, 0.7),
            Surface("cap", _tone(main), metallic, roughness),
            Surface("spots", (0.96, 0.95, 0.9), 0.0, 0.6),
        ],
        "sculpture": [
            Surface("plinth", (0.78, 0.77, 0.74), 0.0, 0.8),
            Surface("body", _tone(main), metallic, roughness),
        ],
    }[shape]
    return {surface.name: surface for surface in own}


# -- assembly ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuiltModel:
    glb: bytes
    shape: str
    faces: int
    vertices: int


def vertex_normals(vertices: Vertices, faces: Faces) -> Vertices:
    """Unit normals per vertex: the area-weighted mean of the normals of its faces.

    Computed here because trimesh's own routine wants scipy (and without it falls back
    to a Python loop that takes a minute for the largest models)."""
    corners = vertices[faces]
    weighted = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    summed = np.stack(
        [
            np.bincount(faces.ravel(), np.repeat(weighted[:, axis], 3), len(vertices))
            for axis in range(3)
        ],
        axis=-1,
    )
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    # A vertex on no face (none are built) or on faces of no area: point it up.
    return np.where(length > 1e-12, summed / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])


def _mesh(parts: list[Part], surface: Surface) -> trimesh.Trimesh:
    vertices: list[Vertices] = []
    faces: list[Faces] = []
    offset = 0
    for part in parts:
        part_vertices, part_faces = part.vertices, part.faces
        if part.flat:
            part_vertices = part_vertices[part_faces].reshape(-1, 3)
            part_faces = np.arange(len(part_vertices), dtype=np.int64).reshape(-1, 3)
        vertices.append(part_vertices)
        faces.append(part_faces + offset)
        offset += len(part_vertices)
    # process=False: vertices stay as built (merging would smooth the flat facets).
    mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
    r, g, b = surface.colour
    # trimesh's constructors carry no annotations.
    mesh.visual = TextureVisuals(  # type: ignore[no-untyped-call]
        material=PBRMaterial(  # type: ignore[no-untyped-call]
            name=surface.name,
            baseColorFactor=[r, g, b, 1.0],
            metallicFactor=surface.metallic,
            roughnessFactor=surface.roughness,
        )
    )
    # A property with a setter that mypy sees as a cached method.
    mesh.vertex_normals = vertex_normals(mesh.vertices, mesh.faces)  # type: ignore[method-assign]
    return mesh


def build_model(
    prompt: str, seed: int, detail: int, *, stop: threading.Event | None = None
) -> BuiltModel:
    """The GLB bytes of the model for `prompt`, `seed` and `detail`."""
    words = _words(prompt)
    shape = choose_shape(prompt)
    rng = _rng(prompt, seed)
    colour_prompt = prompt
    if not any(word in HUE_WORDS for word in words) and shape in SHAPE_COLOUR_WORD:
        colour_prompt = f"{prompt} {SHAPE_COLOUR_WORD[shape]}"
    colours = palette(colour_prompt, rng)
    sculpt = Sculpt(rng, detail, colours, frozenset(words))
    parts = BUILDERS[shape](sculpt)
    # Stand it on the ground plane, whatever dipped below it (a tilted crystal).
    ground = min(float(part.vertices[:, 1].min()) for part in parts)
    for part in parts:
        part.vertices[:, 1] -= ground
    if stop is not None and stop.is_set():
        raise Cancelled()
    materials = surfaces(shape, sculpt)
    scene = trimesh.Scene()
    faces = vertices = 0
    for name, surface in materials.items():
        mine = [part for part in parts if part.surface == name]
        mesh = _mesh(mine, surface)
        faces += len(mesh.faces)
        vertices += len(mesh.vertices)
        scene.add_geometry(mesh, node_name=name, geom_name=name)

    def describe(tree: dict[str, Any]) -> None:
        tree["asset"]["generator"] = "gengate local-3d"
        tree["asset"]["extras"] = {"shape": shape, "seed": seed, "detail": detail}

    glb = export_glb(  # type: ignore[no-untyped-call]
        scene, include_normals=True, tree_postprocessor=describe
    )
    return BuiltModel(bytes(glb), shape, faces, vertices)


class Local3DProvider(Provider):
    modality = "3d"
    description = (
        "A GLB mesh on the CPU: a tree, rock, vase, creature, crystal, mushroom or sculpture "
        "chosen by the prompt, shaped by the seed, with PBR materials in the prompt's colours."
    )
    price = Price(PriceUnit.RUN, Decimal(2))

    def input_schema(self) -> dict[str, Any]:
        return prompt_schema(
            {
                "detail": {
                    "type": "integer",
                    "minimum": MIN_DETAIL,
                    "maximum": MAX_DETAIL,
                    "default": DEFAULT_DETAIL,
                    "description": "Subdivision level: each step about quadruples the faces.",
                },
                "format": {"type": "string", "enum": ["glb"], "default": "glb"},
            }
        )

    def estimate_units(self, model_input: Mapping[str, Any]) -> float:
        return 1

    async def generate(self, ctx: GenerationContext) -> GenerationResult:
        data = ctx.input
        prompt = str(data["prompt"])
        seed = int(data.get("seed", default_seed(prompt)))
        detail = int(data.get("detail", DEFAULT_DETAIL))
        built = await ctx.run_cpu(build_model, prompt, seed, detail)
        ctx.logger.info(
            "built a %s with %d faces", built.shape, built.faces, extra={"event": "model3d.built"}
        )
        await ctx.save_output(built.glb, GLB_CONTENT_TYPE)
        ctx.progress(100)
        return GenerationResult(units=1)

    def limits(self) -> dict[str, Any]:
        return {"shapes": list(SHAPES), "detail": [MIN_DETAIL, MAX_DETAIL]}
