"""The built-in content policy applied at submit.

It refuses any text input containing the word `forbidden`, so that policy refusals
can be exercised end to end. Operators put a real moderation model in front of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gengate.domain.errors import ContentRejected

TEXT_FIELDS = ("prompt", "text", "lyrics", "negative_prompt")
_BLOCKED = re.compile(r"\bforbidden\b", re.IGNORECASE)


def check_content(model_input: Mapping[str, Any]) -> None:
    for field in TEXT_FIELDS:
        value = model_input.get(field)
        if isinstance(value, str) and _BLOCKED.search(value):
            raise ContentRejected(
                "The content policy refused this request.", details={"field": field}
            )
