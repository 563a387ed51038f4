//! Tests of the version encodings (pins live in `tests/it`).
