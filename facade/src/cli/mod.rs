//! The operator's commands other than `tessera server`: [`doctor`] checks the machine, and
//! [`admin`] is the client of a running server's admin endpoints (`tessera status`,
//! `tessera device replace`), and [`users`] manages users, keys and identity policies.

pub mod admin;
pub mod doctor;
pub mod users;
