//! Integration tests: pins.
