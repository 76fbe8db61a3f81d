//! The parity gate: the runtime's golden replay (`vlbeit::verify`, one implementation for the
//! gate and for `vlbeit verify`) run on the freshly written graphs before the bundle is moved
//! into place.

use std::path::Path;

use vlbeit_core::config::PreprocessConfig;

pub use vlbeit::verify::{
    MAX_ABS_TOLERANCE, MIN_COSINE, MIN_COSINE_F16, Tolerance, max_abs_and_cosine,
};
pub use vlbeit_core::manifest::{OutputParity, ParityReport};

use crate::{ExportError, graphs::Precision};

/// Replays `bundle/golden/` through the graphs, tokenizer and `preprocess` of `bundle` on CPU and
/// measures every output against the tolerance of `precision` (the graphs' precision). Nothing
/// is refused here: see [`ParityReport::passed`].
pub fn check_parity(
    bundle: &Path,
    preprocess: &PreprocessConfig,
    runtime: &vlbeit::Runtime,
    precision: Precision,
) -> Result<ParityReport, ExportError> {
    vlbeit::verify::replay_dir(runtime, bundle, preprocess, precision.as_str()).map_err(|e| {
        ExportError::Verify {
            path: bundle.to_owned(),
            reason: e.to_string(),
        }
    })
}
