pub mod chunked;
pub mod policy;
pub mod sigv4;
