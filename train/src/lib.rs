//! vlbeit-train: the VL-BEiT trainer on libtorch (tch).

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod device;
pub mod finetune;
pub mod golden;
pub mod masking;
pub mod model;
pub mod optim;
pub mod plot;
pub mod pretrain;
pub mod tables;
pub mod visual_tokenizer;
