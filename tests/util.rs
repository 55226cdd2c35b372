//! What the integration tests share: running the real `labpipe` binary, reading the files it writes, the
//! generated pipelines of the cache tests, the checked-in fixtures, and a local HTTP server.

pub mod binary;
pub mod cache;
pub mod datasets;
pub mod files;
pub mod fixtures;
pub mod http_server;
pub mod pipeline;
pub mod scale;
