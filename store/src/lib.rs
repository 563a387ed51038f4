//! trove-store (in progress).
