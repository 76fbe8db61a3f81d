//! The VL-BEiT model (DESIGN.md §4): a shared Transformer with mixture-of-modality-experts
//! (MoME) blocks that encodes images, texts and image–text pairs, and its heads.
//!
//! The files follow the data: `embed` (inputs → tokens), `mome` (the block), `encoder`
//! (the three modes), `heads`, and `weights` (safetensors I/O). Weight names are the contract of
//! DESIGN.md §4.5 that the exporter relies on.

mod embed;
mod encoder;
mod heads;
pub(crate) mod init;
mod mome;
mod weights;

#[cfg(test)]
mod tests;

pub use encoder::VlBeit;
pub use heads::Heads;
pub use weights::{
    ShapeMismatch, WeightsError, interpolate_image_pos, load_weights, load_weights_except,
    parameter_count, save_weights,
};
