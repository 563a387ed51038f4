//! Integration tests: the rebuild benchmark's step-count checks on small N.
