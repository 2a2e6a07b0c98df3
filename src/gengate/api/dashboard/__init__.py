"""The dashboard of SPEC §6: a small static web page, shipped in the package, that
talks to the API from the browser (`routes.py` serves it; `static/` holds it)."""
