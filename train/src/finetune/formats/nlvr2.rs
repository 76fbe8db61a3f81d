//! NLVR2 JSON lines: the official files (`{split}.json`, one `{"identifier", "sentence",
//! "label": "True"|"False", "directory"?, ...}` per line; images
//! `DIR/images/{split}/[{directory}/]{identifier minus its last -N}-img{0,1}.png`), and the
//! synthetic scenes' own `nlvr2-{split}.jsonl`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::scenes::Nlvr2Item;

use super::read_image;
use crate::finetune::data::{ImageSet, Nlvr2Data, TaskDataError};

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

#[derive(Deserialize)]
struct Line {
    identifier: String,
    sentence: String,
    label: serde_json::Value,
    #[serde(default)]
    directory: Option<serde_json::Value>,
}

/// The official layout.
pub fn read(
    dir: &Path,
    split: &str,
    preprocess: &PreprocessConfig,
) -> Result<Nlvr2Data, TaskDataError> {
    let path = dir.join(format!("{split}.json"));
    let text = std::fs::read_to_string(&path).map_err(TaskDataError::io(&path))?;
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut data = Nlvr2Data {
        images: ImageSet {
            names: Vec::new(),
            pixels: tch::Tensor::zeros([0], (tch::Kind::Float, tch::Device::Cpu)),
        },
        statements: Vec::new(),
        left: Vec::new(),
        right: Vec::new(),
        labels: Vec::new(),
    };
    for (n, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let entry = format!("line {}", n + 1);
        let line: Line = serde_json::from_str(raw)
            .map_err(|e| TaskDataError::entry(&path, &entry, e.to_string()))?;
        let entry = format!("{entry} ({})", line.identifier);
        let label = match &line.label {
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => true,
            serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => false,
            other => {
                return Err(TaskDataError::entry(
                    &path,
                    &entry,
                    format!("label {other} is neither True nor False"),
                ));
            }
        };
        let prefix = line
            .identifier
            .rsplit_once('-')
            .map(|(p, _)| p)
            .ok_or_else(|| TaskDataError::entry(&path, &entry, "identifier lacks its final -N"))?;
        let mut folder = dir.join("images").join(split);
        if let Some(d) = &line.directory {
            folder = folder.join(d.to_string().trim_matches('"'));
        }
        let mut sides = [0usize; 2];
        for (side, slot) in sides.iter_mut().enumerate() {
            let name = format!("{prefix}-img{side}.png");
            *slot = match index.get(&name) {
                Some(&i) => i,
                None => {
                    let bytes = read_image(&path, &entry, &folder.join(&name))?;
                    images.push((name.clone(), bytes));
                    index.insert(name, images.len() - 1);
                    images.len() - 1
                }
            };
        }
        data.left.push(sides[0]);
        data.right.push(sides[1]);
        data.statements.push(line.sentence);
        data.labels.push(label);
    }
    if data.statements.is_empty() {
        return Err(TaskDataError::invalid(&path, "no items"));
    }
    data.images = ImageSet::from_encoded(&path, &images, preprocess)?;
    Ok(data)
}
