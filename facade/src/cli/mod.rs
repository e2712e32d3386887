//! The operator's commands other than `tessera server`: [`doctor`] checks the machine, and
//! [`admin`] is the client of a running server's admin endpoints (`tessera status`,
//! `tessera device replace`).

pub mod admin;
pub mod doctor;
