"""Use-cases: submit, read, list, cancel, settle. They take the gateway's pieces or a
connection first, and know nothing of HTTP."""
