//! sealwire (building)
pub mod crypto;
pub mod protocol;
pub mod server;
