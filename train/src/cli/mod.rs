//! The `vlbeit-train` subcommands, as library functions so that tests can drive them.

pub mod bench;
pub mod eval;
pub mod finetune;
pub mod init;
pub mod pretrain;
pub mod report;
pub mod scenes;
pub mod tables;
pub mod tokenizer;
pub mod visual_tokenizer;
