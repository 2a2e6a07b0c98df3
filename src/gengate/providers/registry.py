"""The model catalog: configured models, each a provider instance with its policy.

Provider classes come from the built-ins and from the `gengate.providers` entry
point group (third-party packages). Models are built-in by default and may be
added, tuned or disabled in the config's `[models.<id>]` tables.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from jsonschema import Draft202012Validator

from gengate.config import ModelConfig, Settings
from gengate.domain.errors import InvalidInput, NotFound
from gengate.domain.money import Price
from gengate.providers.base import Provider
from gengate.providers.echo import EchoProvider
from gengate.providers.local_3d import Local3DProvider
from gengate.providers.local_image import LocalImageProvider
from gengate.providers.local_music import LocalMusicProvider
from gengate.providers.local_story import LocalStoryProvider
from gengate.providers.local_video import LocalVideoProvider
from gengate.providers.local_voice import LocalVoiceProvider

BUILTIN_PROVIDERS: dict[str, type[Provider]] = {
    "echo": EchoProvider,
    "local-image": LocalImageProvider,
    "local-video": LocalVideoProvider,
    "local-music": LocalMusicProvider,
    "local-voice": LocalVoiceProvider,
    "local-3d": Local3DProvider,
    "local-story": LocalStoryProvider,
}
# Built-in models: model id → provider name.
BUILTIN_MODELS = {
    "echo": "echo",
    "local-image": "local-image",
    "local-video": "local-video",
    "local-music": "local-music",
    "local-voice": "local-voice",
    "local-3d": "local-3d",
    "local-story": "local-story",
}
# The model a modality endpoint uses when the body names none.
DEFAULT_MODEL_BY_MODALITY = {
    "image": "local-image",
    "video": "local-video",
    "music": "local-music",
    "voice": "local-voice",
    "3d": "local-3d",
    "story": "local-story",
}
MAX_VALIDATION_ERRORS = 10


def provider_classes() -> dict[str, type[Provider]]:
    classes = dict(BUILTIN_PROVIDERS)
    for entry in entry_points(group="gengate.providers"):
        if entry.name not in classes:
            loaded = entry.load()
            if isinstance(loaded, type) and issubclass(loaded, Provider):
                classes[entry.name] = loaded
    return classes


def _provider_class(
    name: str, classes: Mapping[str, type[Provider]], model_id: str
) -> type[Provider]:
    """A registered provider by name, or one named by import path (`package.module:Class`),
    for providers that are not packaged with an entry point."""
    if name in classes:
        return classes[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        loaded = getattr(importlib.import_module(module_name), attribute, None)
        if isinstance(loaded, type) and issubclass(loaded, Provider):
            return loaded
        raise ValueError(f"model {model_id!r}: {name!r} is not a Provider class")
    known = ", ".join(sorted(classes))
    raise ValueError(f"model {model_id!r}: unknown provider {name!r} ({known})")


def _fill_defaults(schema: Mapping[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    for name, spec in schema.get("properties", {}).items():
        if name not in data and isinstance(spec, dict) and "default" in spec:
            data[name] = spec["default"]
    return data


@dataclass
class Model:
    """One configured model: what it accepts, what it costs, how it is run."""

    id: str
    provider: Provider
    config: ModelConfig
    concurrency: int
    input_schema: dict[str, Any] = field(init=False)
    validator: Draft202012Validator = field(init=False)

    def __post_init__(self) -> None:
        self.input_schema = self.provider.input_schema()
        self.validator = Draft202012Validator(self.input_schema)

    @property
    def modality(self) -> str:
        return self.provider.modality

    @property
    def description(self) -> str:
        return self.config.description or self.provider.description

    @property
    def price(self) -> Price:
        base = self.provider.price
        if self.config.price_credits is None:
            return base
        return Price(base.unit, self.config.price_credits)

    def validate_input(self, data: Any) -> dict[str, Any]:
        """The input with defaults filled in, or InvalidInput listing what is wrong."""
        errors = sorted(self.validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            raise InvalidInput(
                f"The input does not match the schema of model {self.id!r}.",
                details={
                    "errors": [
                        {
                            "path": "/".join(str(p) for p in error.absolute_path) or "(root)",
                            "message": error.message,
                        }
                        for error in errors[:MAX_VALIDATION_ERRORS]
                    ]
                },
            )
        assert isinstance(data, dict)
        return _fill_defaults(self.input_schema, dict(data))

    def reservation_micro(self, model_input: Mapping[str, Any]) -> int:
        return self.price.micro_for(self.provider.estimate_units(model_input))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "modality": self.modality,
            "description": self.description,
            "input_schema": self.input_schema,
            "pricing": self.price.describe(),
            "limits": {
                "concurrency": self.concurrency,
                "max_running": self.config.max_running,
                "sync_window_s": self.config.sync_window_s,
                "timeout_s": self.config.timeout_s,
                "queue_ttl_s": self.config.queue_ttl_s,
                "queue_depth": self.config.queue_depth,
                "max_attempts": self.config.max_attempts,
                **self.provider.limits(),
            },
        }


class ModelCatalog:
    """The models this deployment serves, by id."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self._models = dict(models)

    def __iter__(self) -> Iterator[Model]:
        return iter(self._models.values())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def ids(self) -> list[str]:
        return list(self._models)

    def get(self, model_id: str) -> Model:
        try:
            return self._models[model_id]
        except KeyError:
            raise NotFound(f"No model named {model_id!r}.", details={"model": model_id}) from None

    def for_modality(self, modality: str, model_id: str | None) -> Model:
        """The model a modality endpoint runs: the one named, or the modality's default."""
        chosen = model_id or DEFAULT_MODEL_BY_MODALITY.get(modality, "")
        model = self.get(chosen)
        if model.modality != modality:
            raise InvalidInput(
                f"Model {chosen!r} makes {model.modality}, not {modality}.",
                details={"model": chosen, "modality": model.modality},
            )
        return model


def build_catalog(settings: Settings) -> ModelCatalog:
    classes = provider_classes()
    configs: dict[str, ModelConfig] = {model_id: ModelConfig() for model_id in BUILTIN_MODELS}
    configs.update(settings.models)
    models: dict[str, Model] = {}
    for model_id, config in configs.items():
        if not config.enabled:
            continue
        provider_name = config.provider or BUILTIN_MODELS.get(model_id, model_id)
        provider = _provider_class(provider_name, classes, model_id)(config.params)
        concurrency = config.concurrency or provider.default_concurrency or (os.cpu_count() or 1)
        models[model_id] = Model(model_id, provider, config, concurrency)
    return ModelCatalog(models)
