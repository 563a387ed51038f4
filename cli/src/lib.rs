//! trove-cli (in progress).
