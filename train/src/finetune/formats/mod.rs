//! Readers of the data formats users fine-tune on, into the in-memory task data of
//! [`super::data`].

pub mod nlvr2;

/// How a data directory is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// The synthetic scenes data set (`vlbeit-train scenes`): every task from one directory.
    Scenes,
}

impl DataFormat {
    pub const NAMES: &'static str = "scenes";

    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Scenes => "scenes",
        }
    }
}

impl std::str::FromStr for DataFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "scenes" => Ok(DataFormat::Scenes),
            other => Err(format!(
                "unknown data format `{other}` ({})",
                DataFormat::NAMES
            )),
        }
    }
}
