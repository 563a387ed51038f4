//! trove: a build-system-style incremental engine with a persistent trace
//! database. This facade re-exports the library surface: the engine
//! ([`engine`], also at the root) and the store ([`store`]).

pub use trove_engine as engine;
pub use trove_engine::*;
pub use trove_store as store;
