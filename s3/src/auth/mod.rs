pub mod chunked;
pub mod sigv4;
