//! vlbeit-train: the VL-BEiT trainer on libtorch (tch).

pub mod cli;
pub mod device;
