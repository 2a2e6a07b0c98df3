"""Configuration: defaults, a TOML file, `GENGATE_*` environment, explicit overrides."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from gengate.config import ModelConfig, RateLimit, Settings, load_settings, parse_rate_limit

pytestmark = pytest.mark.usefixtures("clean_env")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert settings.data_dir == Path("./gengate-data")
    assert settings.database_url is None
    assert settings.resolved_database_url == (
        f"sqlite:///{(Path('./gengate-data') / 'gengate.db').resolve()}"
    )
    assert settings.files_dir == Path("./gengate-data/files")
    assert settings.public_url is None
    assert settings.secret_key is None
    assert settings.rate_limit_policy == RateLimit(limit=1200, period_s=60)
    assert settings.webhooks_allow_private is False
    assert settings.link_ttl_s == 86_400
    assert settings.retention_days == 7
    assert settings.models == {}


def test_model_defaults_follow_the_spec() -> None:
    model = ModelConfig()
    assert model.enabled is True
    assert model.sync_window_s == 55
    assert model.timeout_s == 600
    assert model.queue_ttl_s == 86_400
    assert model.queue_depth == 10_000
    assert model.max_attempts == 3


def test_values_from_a_toml_file(tmp_path: Path) -> None:
    config = write(
        tmp_path / "custom.toml",
        """
data_dir = "/srv/gengate"
database_url = "postgresql://gg@db/gengate"
public_url = "https://gen.example.com"
secret_key = "s3cret"
port = 9000
rate_limit = "10/second"
webhooks_allow_private = true
""",
    )
    settings = load_settings(config)
    assert settings.data_dir == Path("/srv/gengate")
    assert settings.resolved_database_url == "postgresql://gg@db/gengate"
    assert settings.public_url == "https://gen.example.com"
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "s3cret"
    assert settings.port == 9000
    assert settings.rate_limit_policy == RateLimit(limit=10, period_s=1)
    assert settings.webhooks_allow_private is True


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "g.toml", 'port = 9000\nrate_limit = "10/second"\n')
    monkeypatch.setenv("GENGATE_PORT", "9100")
    monkeypatch.setenv("GENGATE_WEBHOOKS_ALLOW_PRIVATE", "1")
    settings = load_settings(config)
    assert settings.port == 9100
    assert settings.rate_limit == "10/second"  # not in the environment: the file's value
    assert settings.webhooks_allow_private is True


def test_explicit_overrides_win_over_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "g.toml", "port = 9000\n")
    monkeypatch.setenv("GENGATE_PORT", "9100")
    assert load_settings(config, port=9200).port == 9200


def test_overrides_left_as_none_do_not_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI passes every optional flag; an absent flag must not mask file or env values.
    config = write(tmp_path / "g.toml", 'data_dir = "/srv/gengate"\n')
    monkeypatch.setenv("GENGATE_PORT", "9100")
    settings = load_settings(config, port=None, data_dir=None)
    assert settings.port == 9100
    assert settings.data_dir == Path("/srv/gengate")


def test_gengate_toml_in_the_working_directory_is_read(clean_env: Path) -> None:
    write(clean_env / "gengate.toml", "port = 9300\n")
    assert load_settings().port == 9300


def test_gengate_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "elsewhere.toml", "port = 9400\n")
    monkeypatch.setenv("GENGATE_CONFIG", str(config))
    assert load_settings().port == 9400


def test_a_missing_config_file_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
    monkeypatch.setenv("GENGATE_CONFIG", str(tmp_path / "also-missing.toml"))
    with pytest.raises(FileNotFoundError):
        load_settings()


def test_unrelated_gengate_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these from the same environment a server may run in.
    monkeypatch.setenv("GENGATE_API_KEY", "gg_live_x")
    monkeypatch.setenv("GENGATE_BASE_URL", "http://127.0.0.1:8000")
    assert load_settings().port == 8000


@pytest.mark.parametrize("text", ["off", "OFF", "none", "0", ""])
def test_rate_limit_off(text: str, tmp_path: Path) -> None:
    assert parse_rate_limit(text) is None
    config = write(tmp_path / "g.toml", f'rate_limit = "{text}"\n')
    assert load_settings(config).rate_limit_policy is None


def test_rate_limit_off_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_RATE_LIMIT", "off")
    assert load_settings().rate_limit_policy is None


@pytest.mark.parametrize(
    ("text", "limit", "period_s"),
    [
        ("1200/minute", 1200, 60),
        ("5/second", 5, 1),
        (" 100 / hour ", 100, 3600),
        ("7/MINUTE", 7, 60),
    ],
)
def test_rate_limit_forms(text: str, limit: int, period_s: int) -> None:
    assert parse_rate_limit(text) == RateLimit(limit=limit, period_s=period_s)
    assert load_settings(rate_limit=text).rate_limit_policy == RateLimit(
        limit=limit, period_s=period_s
    )


@pytest.mark.parametrize(
    "text",
    ["fast", "1200", "1200/min", "1200/day", "-5/minute", "1.5/second", "/minute", "0/minute"],
)
def test_bad_rate_limits_are_rejected(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_settings(rate_limit=text)
    config = write(tmp_path / "g.toml", f'rate_limit = "{text}"\n')
    with pytest.raises(ValidationError):
        load_settings(config)


def test_a_models_table_is_parsed(tmp_path: Path) -> None:
    config = write(
        tmp_path / "g.toml",
        """
[models.echo]
concurrency = 8
price_credits = 0.5
timeout_s = 30
params = { max_latency_ms = 1000 }

[models.local-image]
enabled = false

[models."fast/echo"]
provider = "echo"
description = "a second echo"
""",
    )
    models = load_settings(config).models
    assert set(models) == {"echo", "local-image", "fast/echo"}
    echo = models["echo"]
    assert isinstance(echo, ModelConfig)
    assert echo.concurrency == 8
    assert echo.price_credits == Decimal("0.5")
    assert echo.timeout_s == 30
    assert echo.params == {"max_latency_ms": 1000}
    assert echo.sync_window_s == 55  # unset fields keep their defaults
    assert models["local-image"].enabled is False
    assert models["fast/echo"].provider == "echo"
    assert models["fast/echo"].description == "a second echo"


def test_environment_tunes_one_field_of_a_file_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "g.toml", "[models.echo]\nconcurrency = 8\n")
    monkeypatch.setenv("GENGATE_MODELS__ECHO__TIMEOUT_S", "30")
    echo = load_settings(config).models["echo"]
    assert echo.timeout_s == 30
    assert echo.concurrency == 8


@pytest.mark.parametrize(
    "text",
    [
        "colour = 'blue'\n",  # unknown top-level key
        "[models.echo]\nconcurency = 8\n",  # misspelt model key
        "[storage]\nbuckett = 'x'\n",  # unknown key in a known table
    ],
)
def test_unknown_keys_are_refused(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path / "g.toml", text))


@pytest.mark.parametrize(
    "text",
    [
        "[models.echo]\nconcurrency = 0\n",
        "[models.echo]\nprice_credits = -1\n",
        "[models.echo]\ntimeout_s = 0\n",
        "link_ttl_s = 10\n",
        "port = 'eighty'\n",
    ],
)
def test_out_of_range_values_are_refused(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path / "g.toml", text))


def test_an_unknown_explicit_override_is_refused() -> None:
    with pytest.raises(ValidationError):
        load_settings(no_such_setting=1)


def test_settings_are_not_shared_between_loads(tmp_path: Path) -> None:
    first = load_settings(write(tmp_path / "a.toml", "port = 1111\n"))
    second = load_settings(write(tmp_path / "b.toml", "port = 2222\n"))
    assert (first.port, second.port) == (1111, 2222)
    assert isinstance(first, Settings)
