pub mod chunked;
pub mod policy;
pub mod sigv2;
pub mod sigv4;
