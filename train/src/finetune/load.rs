//! Loading task data and fine-tuned checkpoints, and evaluating a task.

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, nn};
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::scenes::Split;
use vlbeit_core::text::TextTokenizer;

use super::context::TaskModel;
use super::data::{ScenesSplit, TaskDataError};
use super::formats::{self, DataFormat};
use super::heads::{TaskHeadSpec, TaskHeads};
use super::run::FinetuneError;
use super::{Task, TaskData, classify, nlvr2, retrieval, segment, vqa};
use crate::checkpoint::CheckpointConfig;
use crate::model::{VlBeit, load_weights};

/// The `task` data of `split` in `dir`, images preprocessed with `preprocess`.
pub fn load_task_data(
    task: Task,
    format: DataFormat,
    dir: &Path,
    split: &str,
    preprocess: &PreprocessConfig,
) -> Result<TaskData, TaskDataError> {
    match format {
        DataFormat::Scenes => {
            let split: Split = split
                .parse()
                .map_err(|e: String| TaskDataError::invalid(&dir.join("dataset.json"), e))?;
            let scenes = ScenesSplit::read(dir, split)?;
            Ok(match task {
                Task::Retrieval => TaskData::Retrieval(scenes.retrieval(preprocess)?),
                Task::Vqa => TaskData::Vqa(scenes.vqa(preprocess)?),
                Task::Nlvr2 => TaskData::Nlvr2(scenes.nlvr2(preprocess)?),
                Task::Classify => TaskData::Classify(scenes.classify(preprocess)?),
                Task::Segment => TaskData::Segment(scenes.segment(preprocess)?),
            })
        }
        DataFormat::Karpathy if task == Task::Retrieval => Ok(TaskData::Retrieval(
            formats::karpathy::read(dir, split, preprocess)?,
        )),
        DataFormat::Vqav2 if task == Task::Vqa => {
            Ok(TaskData::Vqa(formats::vqav2::read(dir, split, preprocess)?))
        }
        DataFormat::Nlvr2 if task == Task::Nlvr2 => Ok(TaskData::Nlvr2(formats::nlvr2::read(
            dir, split, preprocess,
        )?)),
        DataFormat::ImageFolder if task == Task::Classify => Ok(TaskData::Classify(
            formats::imagefolder::read(dir, split, preprocess)?,
        )),
        DataFormat::Ade20k if task == Task::Segment => Ok(TaskData::Segment(
            formats::ade20k::read(dir, split, preprocess)?,
        )),
        other => Err(TaskDataError::invalid(
            dir,
            format!("the {} format holds no {task} data", other.name()),
        )),
    }
}

/// A checkpoint loaded with its task heads (whichever `model.safetensors` holds).
pub struct FinetunedModel {
    pub config: CheckpointConfig,
    pub vs: nn::VarStore,
    pub model: VlBeit,
    pub heads: TaskHeads,
    pub tokenizer: TextTokenizer,
    pub device: Device,
}

impl FinetunedModel {
    /// Loads `dir` strictly: the heads are those whose tensors the weights file holds, sized
    /// by `config.json`'s `heads` (answers, classes, segment).
    pub fn load(dir: &Path, device: Device) -> Result<Self, FinetuneError> {
        let config = CheckpointConfig::load(dir)?;
        let weights = dir.join("model.safetensors");
        let names: Vec<String> = tch::Tensor::read_safetensors(&weights)
            .map_err(|source| crate::model::WeightsError::Read {
                path: weights.clone(),
                source,
            })?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
        let missing = |what: &str| {
            FinetuneError::Config(format!(
                "{}: model.safetensors holds heads.{what}.* but config.json lacks {}",
                dir.display(),
                match what {
                    "vqa" => "heads.answers",
                    "classify" => "heads.classes",
                    _ => "heads.segment",
                }
            ))
        };
        let heads_config = &config.heads;
        let spec = TaskHeadSpec {
            vqa: if has("heads.vqa.") {
                Some(
                    heads_config
                        .answers
                        .as_ref()
                        .ok_or_else(|| missing("vqa"))?
                        .len(),
                )
            } else {
                None
            },
            nlvr2: has("heads.nlvr2."),
            classify: if has("heads.classify.") {
                Some(
                    heads_config
                        .classes
                        .as_ref()
                        .ok_or_else(|| missing("classify"))?
                        .len(),
                )
            } else {
                None
            },
            segment: if has("heads.segment.") {
                let s = heads_config
                    .segment
                    .as_ref()
                    .ok_or_else(|| missing("segment"))?;
                Some((s.classes.len(), s.layers.clone()))
            } else {
                None
            },
        };
        let mut vs = nn::VarStore::new(device);
        let model = VlBeit::new(&vs.root(), &config.model);
        let heads = TaskHeads::new(&(vs.root() / "heads"), &config.model, &spec);
        load_weights(&mut vs, &weights, &config.model)?;
        let tokenizer = TextTokenizer::load(&dir.join("tokenizer.json"))?;
        Ok(Self {
            config,
            vs,
            model,
            heads,
            tokenizer,
            device,
        })
    }

    pub fn task_model(&self) -> TaskModel<'_> {
        TaskModel {
            model: &self.model,
            heads: &self.heads,
            tokenizer: &self.tokenizer,
            device: self.device,
        }
    }
}

/// Evaluates `task` on `data` (eval mode); the head must exist in `tm`. `answers` / `classes`
/// are the head's label lists (to map the data's labels by name).
pub fn evaluate_task(
    tm: &TaskModel<'_>,
    data: &TaskData,
    answers: Option<&[String]>,
    classes: Option<&[String]>,
    rerank_k: usize,
    batch_size: usize,
) -> Result<BTreeMap<String, f64>, FinetuneError> {
    let need = |what: &str| FinetuneError::Config(format!("the checkpoint has no {what} head"));
    Ok(match data {
        TaskData::Retrieval(d) => retrieval::evaluate(tm, d, rerank_k, batch_size)?,
        TaskData::Vqa(d) => {
            if tm.heads.vqa.is_none() {
                return Err(need("VQA"));
            }
            vqa::evaluate(tm, d, answers.ok_or_else(|| need("VQA"))?, batch_size)?
        }
        TaskData::Nlvr2(d) => {
            if tm.heads.nlvr2.is_none() {
                return Err(need("NLVR2"));
            }
            nlvr2::evaluate(tm, d, batch_size)?
        }
        TaskData::Classify(d) => {
            let classes = classes
                .filter(|_| tm.heads.classify.is_some())
                .ok_or_else(|| need("classification"))?;
            let class_map = d
                .classes
                .iter()
                .map(|c| {
                    classes.iter().position(|x| x == c).ok_or_else(|| {
                        FinetuneError::Config(format!(
                            "class `{c}` of the data is not one of the checkpoint's classes"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            classify::evaluate(tm, d, &class_map, batch_size)
        }
        TaskData::Segment(d) => {
            if tm.heads.segment.is_none() {
                return Err(need("segmentation"));
            }
            segment::evaluate(tm, d, batch_size)
        }
    })
}
