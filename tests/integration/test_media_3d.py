"""`local-3d`: GLB meshes that trimesh loads back, with the faces `detail` asks for,
outward normals, PBR materials in the prompt's colours, the same bytes for the same
seed, and a price of 2 credits per run; run through a real worker on SQLite and
PostgreSQL."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import numpy as np
import pytest
import trimesh

from gengate.domain.errors import InvalidInput
from gengate.providers.local_3d import SHAPES, build_model, choose_shape
from gengate.services.gateway import Gateway
from tests.conftest import Caller
from tests.integration.media_checks import TERMINAL
from tests.integration.test_providers import money, read_job, running_worker, submit, wait_for_job

PROMPTS = {
    "tree": "an old oak tree",
    "rock": "a mossy boulder",
    "vase": "a tall porcelain vase",
    "creature": "a friendly little dragon",
    "crystal": "an amethyst crystal cluster",
    "mushroom": "a spotted mushroom",
    "sculpture": "an abstract form",
}
GLB_MAGIC = b"glTF"
JSON_CHUNK = 0x4E4F534A
BIN_CHUNK = 0x004E4942


def load_scene(data: bytes) -> trimesh.Scene:
    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    assert isinstance(scene, trimesh.Scene)
    return scene


def gltf_json(data: bytes) -> dict[str, Any]:
    """The JSON chunk of a GLB container, read by its layout (glTF 2.0, section 4.4)."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (GLB_MAGIC, 2, len(data))
    chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
    assert chunk_type == JSON_CHUNK
    (bin_length, bin_type) = struct.unpack_from("<II", data, 20 + chunk_length)
    assert bin_type == BIN_CHUNK and 28 + chunk_length + bin_length == len(data)
    parsed: dict[str, Any] = json.loads(data[20 : 20 + chunk_length])
    return parsed


def face_count(scene: trimesh.Scene) -> int:
    return sum(len(mesh.faces) for mesh in scene.geometry.values())


async def test_a_mesh_job_runs_through_the_worker(gateway: Gateway, caller: Caller) -> None:
    before = await money(gateway, caller)
    model_input = {"prompt": "a small purple creature", "seed": 11}
    jobs = [await submit(gateway, caller, "local-3d", dict(model_input)) for _ in range(2)]
    async with running_worker(gateway, "local-3d"):
        done = [
            await wait_for_job(
                gateway, job.id, lambda row: row.status in TERMINAL, timeout_s=30, what="the mesh"
            )
            for job in jobs
        ]
    files = []
    for row in done:
        assert row.status == "succeeded", row.error
        (output,) = row.result["outputs"]
        assert output["content_type"] == "model/gltf-binary"
        assert output["storage_key"].endswith(".glb")
        data = await gateway.storage.read(output["storage_key"])
        assert data is not None and len(data) == output["bytes"]
        files.append(data)
        # 2 credits per run, reserved and charged.
        job = await read_job(gateway, row.id)
        assert (job.reserved_micro, job.cost_micro) == (20_000, 20_000)
    # The default detail (3) gives more than a thousand faces.
    scene = load_scene(files[0])
    assert face_count(scene) > 1_000
    assert choose_shape(model_input["prompt"]) == "creature"
    # The same input and seed: the same bytes.
    assert files[0] == files[1]
    after = await money(gateway, caller)
    assert after.balance_micro == before.balance_micro - 2 * 20_000
    assert after.reserved_micro == before.reserved_micro


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_is_a_closed_mesh_with_outward_normals(shape: str) -> None:
    prompt = PROMPTS[shape]
    assert choose_shape(prompt) == shape
    data = build_model(prompt, 5, 3).glb
    scene = load_scene(data)
    assert face_count(scene) > 1_000
    document = gltf_json(data)
    assert document["asset"]["version"] == "2.0"
    assert document["asset"]["extras"] == {"shape": shape, "seed": 5, "detail": 3}
    for name, mesh in scene.geometry.items():
        primitive_attributes = {
            key
            for gltf_mesh in document["meshes"]
            for primitive in gltf_mesh["primitives"]
            for key in primitive["attributes"]
        }
        assert {"POSITION", "NORMAL"} <= primitive_attributes
        # Closed: once coincident vertices are merged (faceted parts keep their own),
        # every edge has two faces, and the enclosed volume is positive (outward winding).
        closed = mesh.copy()
        closed.merge_vertices()
        assert closed.is_watertight, name
        assert closed.volume > 0, name
        # The stored normals are unit length and agree with the (outward) winding.
        normals = np.asarray(mesh.vertex_normals)
        assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-3)
        corner_normals = normals[mesh.faces].mean(axis=1)
        agreement = np.einsum("ij,ij->i", corner_normals, mesh.face_normals)
        assert np.mean(agreement > 0) > 0.99, name
    # It stands on the ground and is about the size of a real object.
    bounds = scene.bounds
    assert bounds[0][1] == pytest.approx(0.0, abs=0.05)
    assert 0.5 < float(np.ptp(bounds[:, 1])) < 3.0


@pytest.mark.parametrize("shape", SHAPES)
def test_detail_sets_the_resolution(shape: str) -> None:
    counts = [face_count(load_scene(build_model(PROMPTS[shape], 2, d).glb)) for d in range(1, 6)]
    assert counts == sorted(counts) and len(set(counts)) == 5, counts
    assert counts[2] > 1_000


def test_same_seed_same_bytes_other_seed_other_mesh() -> None:
    first = build_model("a weathered rock", 1, 3).glb
    assert build_model("a weathered rock", 1, 3).glb == first
    other = build_model("a weathered rock", 2, 3).glb
    assert other != first
    a = next(iter(load_scene(first).geometry.values()))
    b = next(iter(load_scene(other).geometry.values()))
    assert not np.allclose(a.bounds, b.bounds)


def test_materials_take_the_prompts_colours_and_finish() -> None:
    def main_material(prompt: str) -> dict[str, Any]:
        materials = gltf_json(build_model(prompt, 4, 1).glb)["materials"]
        (glaze,) = [m for m in materials if m["name"] == "glaze"]
        pbr: dict[str, Any] = glaze["pbrMetallicRoughness"]
        return pbr

    red = main_material("a red vase")["baseColorFactor"]
    blue = main_material("a blue vase")["baseColorFactor"]
    assert red[0] > red[2] and blue[2] > blue[0]
    assert main_material("a golden vase")["metallicFactor"] == 1.0
    assert main_material("a clay vase")["metallicFactor"] == 0.0


def test_the_schema_takes_detail_and_glb_only(gateway: Gateway) -> None:
    model = gateway.catalog.get("local-3d")
    assert model.modality == "3d"
    assert model.validate_input({"prompt": "a rock"}) == {
        "prompt": "a rock",
        "detail": 3,
        "format": "glb",
    }
    for bad in (
        {"prompt": "a rock", "detail": 0},
        {"prompt": "a rock", "detail": 6},
        {"prompt": "a rock", "format": "obj"},
        {"prompt": "a rock", "colour": "red"},
        {"detail": 2},
    ):
        with pytest.raises(InvalidInput):
            model.validate_input(bad)
    assert (
        model.reservation_micro(model.validate_input({"prompt": "a rock", "detail": 5})) == 20_000
    )
