//! sealwire (building)
pub mod crypto;
pub mod protocol;
