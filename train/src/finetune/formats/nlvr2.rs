//! NLVR2 JSON lines.

use std::path::Path;

use vlbeit_core::scenes::Nlvr2Item;

use crate::finetune::data::TaskDataError;

/// The scenes data set's own `nlvr2-{split}.jsonl` (one [`Nlvr2Item`] per line).
pub fn read_jsonl(path: &Path) -> Result<Vec<Nlvr2Item>, TaskDataError> {
    let text = std::fs::read_to_string(path).map_err(TaskDataError::io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| TaskDataError::entry(path, format!("line {}", n + 1), e.to_string()))
        })
        .collect()
}
