//! The operator's commands, one file each: every subcommand of
//! `padnet-gateway` takes its parsed arguments and does the work here, so
//! `main.rs` only parses and dispatches.

pub mod init;
pub mod install;
pub mod mint;
pub mod policy;
pub mod report;
pub mod retail;
pub mod serve;
pub mod site;
