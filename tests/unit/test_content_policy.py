"""The built-in content policy refuses the word `forbidden` in text inputs."""

from __future__ import annotations

from typing import Any

import pytest

from gengate.domain.content_policy import check_content
from gengate.domain.errors import ContentRejected


@pytest.mark.parametrize(
    ("model_input", "field"),
    [
        ({"prompt": "forbidden"}, "prompt"),
        ({"prompt": "a Forbidden city at dawn"}, "prompt"),
        ({"prompt": "FORBIDDEN!"}, "prompt"),
        ({"prompt": "the forbidden-fruit tree"}, "prompt"),
        ({"text": "read this: forbidden."}, "text"),
        ({"prompt": "a song", "lyrics": "la la fOrBiDdEn la"}, "lyrics"),
    ],
)
def test_the_word_forbidden_is_refused(model_input: dict[str, Any], field: str) -> None:
    with pytest.raises(ContentRejected) as caught:
        check_content(model_input)
    assert caught.value.http_status == 451
    assert caught.value.code == "content_rejected"
    assert caught.value.details == {"field": field}


@pytest.mark.parametrize(
    "model_input",
    [
        {"prompt": "unforbiddenness"},
        {"prompt": "forbiddenly"},
        {"prompt": "notforbidden"},
        {"prompt": "forbidden_thing"},
        {"prompt": "a cat in a hat"},
        {"prompt": "ok", "style": "forbidden"},  # not a text field the policy reads
        {"prompt": "ok", "metadata": {"note": "forbidden"}},
        {"prompt": ["forbidden"]},  # not a string
        {},
    ],
)
def test_other_inputs_pass(model_input: dict[str, Any]) -> None:
    check_content(model_input)
