//! trove's integration tests: one binary, one module per area.

mod bench;
mod cli;
mod crash;
mod engine;
mod incremental;
mod pins;
mod props;
mod stamp;
mod store;
mod support;
mod tidy;
