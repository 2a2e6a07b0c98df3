"""The model catalog: built-in models, config overrides, input validation and prices."""

from __future__ import annotations

from typing import Any

import pytest

from gengate.config import Settings, load_settings
from gengate.domain.errors import InvalidInput, NotFound
from gengate.providers.echo import EchoProvider
from gengate.providers.local_image import LocalImageProvider
from gengate.providers.registry import ModelCatalog, build_catalog

pytestmark = pytest.mark.usefixtures("clean_env")


def catalog_for(**models: dict[str, Any]) -> ModelCatalog:
    settings: Settings = load_settings(models=models) if models else load_settings()
    return build_catalog(settings)


@pytest.fixture
def catalog() -> ModelCatalog:
    return catalog_for()


def error_paths(error: InvalidInput) -> list[str]:
    return [entry["path"] for entry in error.details["errors"]]


def test_built_in_models(catalog: ModelCatalog) -> None:
    assert {"echo", "local-image"} <= set(catalog.ids())
    assert "echo" in catalog
    echo = catalog.get("echo")
    assert isinstance(echo.provider, EchoProvider)
    assert echo.modality == "image"
    assert echo.concurrency == 64
    image = catalog.get("local-image")
    assert isinstance(image.provider, LocalImageProvider)
    assert image.modality == "image"
    assert image.concurrency >= 1
    assert {model.id for model in catalog} == set(catalog.ids())


def test_disabling_a_model_removes_it() -> None:
    catalog = catalog_for(echo={"enabled": False})
    assert "echo" not in catalog
    assert "local-image" in catalog
    with pytest.raises(NotFound):
        catalog.get("echo")


def test_config_tunes_a_built_in_model() -> None:
    echo = catalog_for(echo={"concurrency": 3, "description": "tuned", "timeout_s": 5}).get("echo")
    assert echo.concurrency == 3
    assert echo.description == "tuned"
    assert echo.config.timeout_s == 5
    assert echo.describe()["limits"]["timeout_s"] == 5


def test_a_new_model_id_can_reuse_a_provider() -> None:
    catalog = catalog_for(**{"fal-ai/echo": {"provider": "echo"}})
    model = catalog.get("fal-ai/echo")
    assert isinstance(model.provider, EchoProvider)
    assert model.id == "fal-ai/echo"
    assert "echo" in catalog


def test_an_unknown_provider_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="no-such-provider"):
        catalog_for(mystery={"provider": "no-such-provider"})


def test_operator_params_reach_the_provider() -> None:
    echo = catalog_for(echo={"params": {"max_latency_ms": 250}}).get("echo")
    assert echo.describe()["limits"]["max_latency_ms"] == 250


def test_unknown_model_is_not_found(catalog: ModelCatalog) -> None:
    with pytest.raises(NotFound) as caught:
        catalog.get("no-such-model")
    assert caught.value.details == {"model": "no-such-model"}


def test_validate_input_fills_defaults(catalog: ModelCatalog) -> None:
    submitted = {"prompt": "a cat"}
    assert catalog.get("echo").validate_input(submitted) == {
        "prompt": "a cat",
        "latency_ms": 0,
        "fail": False,
        "progress_steps": 0,
        "fail_attempts": 0,
    }
    assert submitted == {"prompt": "a cat"}  # the caller's dict is not changed
    assert catalog.get("local-image").validate_input({"prompt": "a cat", "width": 64}) == {
        "prompt": "a cat",
        "width": 64,
        "height": 512,
        "num_images": 1,
        "format": "png",
    }


def test_validate_input_keeps_given_values(catalog: ModelCatalog) -> None:
    given = {"prompt": "p", "seed": 7, "latency_ms": 5, "fail": True}
    assert catalog.get("echo").validate_input(given) == {
        **given,
        "progress_steps": 0,
        "fail_attempts": 0,
    }


@pytest.mark.parametrize(
    ("model_input", "paths"),
    [
        ({"prompt": "a cat", "colour": "red"}, ["(root)"]),  # unknown field
        ({}, ["(root)"]),  # prompt is required
        ({"prompt": ""}, ["prompt"]),
        ({"prompt": 42}, ["prompt"]),
        ({"prompt": "a cat", "width": "wide"}, ["width"]),
        ({"prompt": "a cat", "width": 63}, ["width"]),
        ({"prompt": "a cat", "height": 4096}, ["height"]),
        ({"prompt": "a cat", "num_images": 5}, ["num_images"]),
        ({"prompt": "a cat", "num_images": 1.5}, ["num_images"]),
        ({"prompt": "a cat", "format": "gif"}, ["format"]),
        ({"prompt": "a cat", "seed": -1}, ["seed"]),
        ({"prompt": "a cat", "width": 1, "num_images": 0}, ["num_images", "width"]),
    ],
)
def test_validate_input_refuses_bad_input(model_input: dict[str, Any], paths: list[str]) -> None:
    model = catalog_for().get("local-image")
    with pytest.raises(InvalidInput) as caught:
        model.validate_input(model_input)
    error = caught.value
    assert error.http_status == 422
    assert "local-image" in error.message
    assert error_paths(error) == paths
    assert all(entry["message"] for entry in error.details["errors"])


def test_unknown_field_error_names_the_field(catalog: ModelCatalog) -> None:
    with pytest.raises(InvalidInput) as caught:
        catalog.get("echo").validate_input({"prompt": "a cat", "colour": "red"})
    assert "colour" in caught.value.details["errors"][0]["message"]


@pytest.mark.parametrize("model_input", [None, [], "a cat", 3])
def test_validate_input_refuses_non_objects(catalog: ModelCatalog, model_input: Any) -> None:
    with pytest.raises(InvalidInput):
        catalog.get("echo").validate_input(model_input)


def test_validation_errors_are_bounded(catalog: ModelCatalog) -> None:
    many = {"prompt": "a cat", **{f"extra{i}": i for i in range(50)}}
    bad = {"prompt": 1, "seed": "x", "latency_ms": -1, "fail": "no", "progress_steps": 1000}
    with pytest.raises(InvalidInput) as caught:
        catalog.get("echo").validate_input({**many, **bad})
    assert 1 <= len(caught.value.details["errors"]) <= 10


def test_reservations(catalog: ModelCatalog) -> None:
    echo = catalog.get("echo")
    assert echo.reservation_micro(echo.validate_input({"prompt": "a"})) == 1_000
    image = catalog.get("local-image")
    assert image.reservation_micro(image.validate_input({"prompt": "a"})) == 10_000
    for count in (1, 2, 3, 4):
        model_input = image.validate_input({"prompt": "a", "num_images": count})
        assert image.reservation_micro(model_input) == 10_000 * count


def test_a_price_override() -> None:
    catalog = catalog_for(echo={"price_credits": "2.5"}, **{"local-image": {"price_credits": 0}})
    echo = catalog.get("echo")
    assert echo.reservation_micro({"prompt": "a"}) == 25_000
    assert echo.describe()["pricing"] == {
        "unit": "run",
        "credits_per_unit": 2.5,
        "micro_per_unit": 25_000,
    }
    image = catalog.get("local-image")
    assert image.reservation_micro({"prompt": "a", "num_images": 4}) == 0


def test_describe_follows_the_models_listing_shape(catalog: ModelCatalog) -> None:
    described = catalog.get("local-image").describe()
    assert set(described) == {"id", "modality", "description", "input_schema", "pricing", "limits"}
    assert described["id"] == "local-image"
    assert described["modality"] == "image"
    assert described["input_schema"]["additionalProperties"] is False
    assert described["pricing"] == {
        "unit": "image",
        "credits_per_unit": 1.0,
        "micro_per_unit": 10_000,
    }
    limits = described["limits"]
    assert limits["sync_window_s"] == 55
    assert limits["queue_depth"] == 10_000
    assert limits["max_attempts"] == 3


def test_for_modality_uses_the_named_model_or_the_default(catalog: ModelCatalog) -> None:
    assert catalog.for_modality("image", "echo").id == "echo"
    assert catalog.for_modality("image", None).id == "local-image"


def test_for_modality_unknown_model_is_not_found(catalog: ModelCatalog) -> None:
    with pytest.raises(NotFound):
        catalog.for_modality("image", "no-such-model")


def test_for_modality_wrong_modality_is_invalid_input(catalog: ModelCatalog) -> None:
    with pytest.raises(InvalidInput) as caught:
        catalog.for_modality("video", "echo")
    assert caught.value.details == {"model": "echo", "modality": "image"}


def test_for_modality_default_disabled_is_not_found() -> None:
    catalog = catalog_for(**{"local-image": {"enabled": False}})
    with pytest.raises(NotFound):
        catalog.for_modality("image", None)
