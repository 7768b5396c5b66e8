//! Kubernetes NetworkPolicy: parsed and validated as the API server does
//! (`parse.rs`, `selector.rs`, pods' named ports in `ports.rs`), compiled into what the data path's maps hold
//! (`compile.rs`).

pub mod compile;
pub mod parse;
pub mod ports;
pub mod selector;
pub mod types;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
}
