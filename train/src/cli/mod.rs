//! The `vlbeit-train` subcommands, as library functions so that tests can drive them.

pub mod scenes;
pub mod tokenizer;
