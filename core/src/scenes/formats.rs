//! The synthetic scenes written in the public formats users fine-tune on, so that the
//! trainer's readers of those formats are tested on data the project makes:
//!
//! | format | layout under the output directory |
//! | --- | --- |
//! | Karpathy (COCO / Flickr30K retrieval) | `dataset_scenes.json`, `images/{key}.png` |
//! | VQAv2 | `v2_OpenEnded_mscoco_{split}_questions.json`, `v2_mscoco_{split}_annotations.json`, `{split}/COCO_{split}_{image_id:012}.png` |
//! | NLVR2 | `{split}.json` (JSON lines), `images/{split}/{identifier minus -N}-img{0,1}.png` |
//! | ImageNet class folders | `{split}/{class}/{key}.png` |
//! | ADE20K | `images/{split}/{key}.png`, `annotations/{split}/{key}.png` (0 = other, class k → k + 1), `classes.txt` |
//!
//! Split names are the scenes' (`train`, `val`, `test`, `compositional`).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::render::encode_png;
use super::vocab::{CLASS_NAMES, SEGMENTATION_CLASSES};
use super::{DatasetError, SceneGenerator, Split, SplitCounts};

/// A public data format the scenes can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskFormat {
    Karpathy,
    Vqav2,
    Nlvr2,
    ImageFolder,
    Ade20k,
}

impl TaskFormat {
    pub const ALL: [TaskFormat; 5] = [
        TaskFormat::Karpathy,
        TaskFormat::Vqav2,
        TaskFormat::Nlvr2,
        TaskFormat::ImageFolder,
        TaskFormat::Ade20k,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskFormat::Karpathy => "karpathy",
            TaskFormat::Vqav2 => "vqav2",
            TaskFormat::Nlvr2 => "nlvr2",
            TaskFormat::ImageFolder => "imagefolder",
            TaskFormat::Ade20k => "ade20k",
        }
    }
}

impl std::str::FromStr for TaskFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TaskFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown format `{s}` (karpathy, vqav2, nlvr2, imagefolder, ade20k)")
            })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, bytes).map_err(io(path))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), DatasetError> {
    write(
        path,
        &serde_json::to_vec_pretty(value).expect("JSON values serialise"),
    )
}

/// Writes `counts` scenes per split (and as many NLVR2 items) of `generator` in `format`
/// under `out` (created; existing files of the same names are overwritten).
pub fn write_task_format(
    out: &Path,
    format: TaskFormat,
    generator: &SceneGenerator,
    counts: &SplitCounts,
) -> Result<(), DatasetError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    match format {
        TaskFormat::Karpathy => karpathy(out, generator, counts),
        TaskFormat::Vqav2 => vqav2(out, generator, counts),
        TaskFormat::Nlvr2 => nlvr2(out, generator, counts),
        TaskFormat::ImageFolder => image_folder(out, generator, counts),
        TaskFormat::Ade20k => ade20k(out, generator, counts),
    }
}

fn tokens(sentence: &str) -> Vec<String> {
    sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn karpathy(out: &Path, g: &SceneGenerator, counts: &SplitCounts) -> Result<(), DatasetError> {
    let mut images = Vec::new();
    let (mut imgid, mut sentid) = (0u64, 0u64);
    for split in Split::ALL {
        for index in 0..counts.get(split) {
            let scene = g.generate(split, index);
            let filename = format!("{}.png", scene.key);
            write(&out.join("images").join(&filename), &scene.png)?;
            let mut sentences = Vec::new();
            let mut ids = Vec::new();
            for caption in &scene.captions {
                sentences.push(json!({
                    "tokens": tokens(caption), "raw": caption, "imgid": imgid, "sentid": sentid
                }));
                ids.push(sentid);
                sentid += 1;
            }
            images.push(json!({
                "filepath": "images", "filename": filename, "imgid": imgid, "cocoid": imgid,
                "split": split.name(), "sentids": ids, "sentences": sentences
            }));
            imgid += 1;
        }
    }
    write_json(
        &out.join("dataset_scenes.json"),
        &json!({ "images": images, "dataset": "scenes" }),
    )
}

fn vqav2(out: &Path, g: &SceneGenerator, counts: &SplitCounts) -> Result<(), DatasetError> {
    for split in Split::ALL {
        let s = split.name();
        let (mut questions, mut annotations) = (Vec::new(), Vec::new());
        for index in 0..counts.get(split) {
            let scene = g.generate(split, index);
            let image_id = index;
            write(
                &out.join(s).join(format!("COCO_{s}_{image_id:012}.png")),
                &scene.png,
            )?;
            for (k, q) in scene.questions.iter().enumerate() {
                let question_id = image_id * 10 + k as u64;
                questions.push(json!({
                    "image_id": image_id, "question": q.question, "question_id": question_id
                }));
                let answers: Vec<_> = q
                    .answers
                    .iter()
                    .enumerate()
                    .map(|(i, a)| json!({"answer": a, "answer_confidence": "yes", "answer_id": i + 1}))
                    .collect();
                annotations.push(json!({
                    "question_id": question_id, "image_id": image_id, "answers": answers,
                    "multiple_choice_answer": q.answer, "question_type": "what",
                    "answer_type": "other"
                }));
            }
        }
        write_json(
            &out.join(format!("v2_OpenEnded_mscoco_{s}_questions.json")),
            &json!({ "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": s,
                     "questions": questions }),
        )?;
        write_json(
            &out.join(format!("v2_mscoco_{s}_annotations.json")),
            &json!({ "data_type": "mscoco", "data_subtype": s, "annotations": annotations }),
        )?;
    }
    Ok(())
}

fn nlvr2(out: &Path, g: &SceneGenerator, counts: &SplitCounts) -> Result<(), DatasetError> {
    for split in Split::ALL {
        let s = split.name();
        let scenes = counts.get(split);
        let mut lines = String::new();
        if scenes > 0 {
            for index in 0..scenes {
                let item = g.nlvr2_item(split, index, scenes);
                let prefix = format!("{s}-{index}-0");
                for (side, scene) in [(0, item.left_index), (1, item.right_index)] {
                    let path: PathBuf = out
                        .join("images")
                        .join(s)
                        .join(format!("{prefix}-img{side}.png"));
                    write(&path, &g.generate(split, scene).png)?;
                }
                let line = json!({
                    "identifier": format!("{prefix}-0"), "sentence": item.statement,
                    "label": if item.label { "True" } else { "False" },
                    "synset": "scene", "query": "scenes"
                });
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
        }
        write(&out.join(format!("{s}.json")), lines.as_bytes())?;
    }
    Ok(())
}

fn image_folder(out: &Path, g: &SceneGenerator, counts: &SplitCounts) -> Result<(), DatasetError> {
    for split in Split::ALL {
        for index in 0..counts.get(split) {
            let scene = g.generate(split, index);
            let path = out
                .join(split.name())
                .join(CLASS_NAMES[scene.label])
                .join(format!("{}.png", scene.key));
            write(&path, &scene.png)?;
        }
    }
    Ok(())
}

fn ade20k(out: &Path, g: &SceneGenerator, counts: &SplitCounts) -> Result<(), DatasetError> {
    for split in Split::ALL {
        let s = split.name();
        for index in 0..counts.get(split) {
            let scene = g.generate(split, index);
            let name = format!("{}.png", scene.key);
            write(&out.join("images").join(s).join(&name), &scene.png)?;
            // ADE20K reserves 0 for "other" (ignored); our background is a real class.
            let shifted: Vec<u8> = scene.mask.iter().map(|&v| v + 1).collect();
            write(
                &out.join("annotations").join(s).join(&name),
                &encode_png(&shifted, scene.image_size, 1),
            )?;
        }
    }
    let mut classes = SEGMENTATION_CLASSES.join("\n");
    classes.push('\n');
    write(&out.join("classes.txt"), classes.as_bytes())
}
