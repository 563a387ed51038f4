//! Tests of job validation.
