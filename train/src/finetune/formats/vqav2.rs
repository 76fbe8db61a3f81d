//! VQAv2: `v2_OpenEnded_mscoco_{split}_questions.json` (`{"questions": [{"image_id",
//! "question", "question_id"}]}`), `v2_mscoco_{split}_annotations.json` (`{"annotations":
//! [{"question_id", "image_id", "answers": [{"answer", ...} × 10], ...}]}`) and the images
//! `{split}/COCO_{split}_{image_id:012}.{jpg,png}`, all in one directory (`split` as in the file
//! names, e.g. `train2014`).
//!
//! Answers are normalized as the official evaluation does (lowercase; punctuation removed or
//! turned into a space; a period kept only before a digit; number words → digits; articles
//! dropped; the contraction table is not applied) and soft-scored with the official accuracy:
//! an answer given by `m` of the `n` annotators scores the mean over the `n` leave-one-out
//! subsets of `min(1, matches / 3)`, i.e. 0.3, 0.6, 0.9, 1 for m = 1, 2, 3, ≥ 4 of 10 (the
//! synthetic scenes' own files use the common shortcut `min(1, m / 3)`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vlbeit_core::config::PreprocessConfig;

use super::{json_entries, read_image};
use crate::finetune::data::{ImageSet, TaskDataError, VqaData};

/// An answer enters the vocabulary when annotators gave it at least this often in the split
/// (VLMo / ViLT keep answers seen ≥ 9 times in VQAv2 train + val: 3 129 answers).
pub const MIN_ANSWER_COUNT: usize = 9;

const PUNCTUATION: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

const NUMBERS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

/// The official evaluation's answer normalization (without the contraction table).
pub fn normalize_answer(answer: &str) -> String {
    let text: Vec<char> = answer
        .to_lowercase()
        .replace(['\n', '\t'], " ")
        .trim()
        .chars()
        .collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in text.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| text[j]);
        let next = text.get(i + 1).copied();
        if PUNCTUATION.contains(&c) {
            let digit_comma = c == ','
                && prev.is_some_and(|p| p.is_ascii_digit())
                && next.is_some_and(|n| n.is_ascii_digit());
            if prev == Some(' ') || next == Some(' ') || digit_comma {
                continue;
            }
            out.push(' ');
        } else if c == '.' {
            if next.is_some_and(|n| n.is_ascii_digit()) {
                out.push('.');
            }
        } else {
            out.push(c);
        }
    }
    out.split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(|w| {
            NUMBERS
                .iter()
                .find(|(word, _)| *word == w)
                .map_or(w, |(_, digit)| digit)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Official VQA soft scores of the distinct answers among `answers` (already normalized).
pub fn soft_scores(answers: &[String]) -> Vec<(String, f32)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in answers {
        *counts.entry(a.as_str()).or_default() += 1;
    }
    let n = answers.len();
    counts
        .into_iter()
        .map(|(a, m)| {
            let sum: f64 = answers
                .iter()
                .map(|left_out| {
                    let matches = m - usize::from(left_out == a);
                    (matches as f64 / 3.0).min(1.0)
                })
                .sum();
            (a.to_string(), (sum / n as f64) as f32)
        })
        .collect()
}

#[derive(Deserialize)]
struct Question {
    image_id: u64,
    question: String,
    question_id: u64,
}

#[derive(Deserialize)]
struct Annotation {
    question_id: u64,
    answers: Vec<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    answer: String,
}

pub fn files(dir: &Path, split: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("v2_OpenEnded_mscoco_{split}_questions.json")),
        dir.join(format!("v2_mscoco_{split}_annotations.json")),
    )
}

pub fn read(
    dir: &Path,
    split: &str,
    preprocess: &PreprocessConfig,
) -> Result<VqaData, TaskDataError> {
    let (questions_path, annotations_path) = files(dir, split);
    let questions: Vec<Question> = json_entries(&questions_path, "questions", "question_id")?;
    let annotations: Vec<Annotation> =
        json_entries(&annotations_path, "annotations", "question_id")?;
    let answers_of: HashMap<u64, &Annotation> =
        annotations.iter().map(|a| (a.question_id, a)).collect();
    let mut images: Vec<(String, Vec<u8>)> = Vec::new();
    let mut image_index: HashMap<u64, usize> = HashMap::new();
    let mut data_questions = Vec::with_capacity(questions.len());
    let mut question_image = Vec::with_capacity(questions.len());
    let mut targets = Vec::with_capacity(questions.len());
    let mut frequency: HashMap<String, usize> = HashMap::new();
    for q in &questions {
        let entry = format!("question_id {}", q.question_id);
        let annotation = answers_of.get(&q.question_id).ok_or_else(|| {
            TaskDataError::entry(&annotations_path, &entry, "no annotation for this question")
        })?;
        if annotation.answers.is_empty() {
            return Err(TaskDataError::entry(
                &annotations_path,
                &entry,
                "empty answer list",
            ));
        }
        let index = match image_index.get(&q.image_id) {
            Some(&i) => i,
            None => {
                let stem = format!("COCO_{split}_{:012}", q.image_id);
                let folder = dir.join(split);
                let file = ["jpg", "png", "jpeg", "webp"]
                    .iter()
                    .map(|ext| folder.join(format!("{stem}.{ext}")))
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| folder.join(format!("{stem}.jpg")));
                let bytes = read_image(
                    &questions_path,
                    &format!("{entry} (image_id {})", q.image_id),
                    &file,
                )?;
                images.push((stem, bytes));
                image_index.insert(q.image_id, images.len() - 1);
                images.len() - 1
            }
        };
        let normalized: Vec<String> = annotation
            .answers
            .iter()
            .map(|a| normalize_answer(&a.answer))
            .collect();
        for a in &normalized {
            *frequency.entry(a.clone()).or_default() += 1;
        }
        data_questions.push(q.question.clone());
        question_image.push(index);
        targets.push(soft_scores(&normalized));
    }
    if data_questions.is_empty() {
        return Err(TaskDataError::invalid(&questions_path, "no questions"));
    }
    let mut answers: Vec<(String, usize)> = frequency
        .into_iter()
        .filter(|(_, n)| *n >= MIN_ANSWER_COUNT)
        .collect();
    answers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(VqaData {
        images: ImageSet::from_encoded(&questions_path, &images, preprocess)?,
        questions: data_questions,
        question_image,
        targets,
        answers: answers.into_iter().map(|(a, _)| a).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_normalized_as_the_official_evaluation() {
        assert_eq!(normalize_answer("Two"), "2");
        assert_eq!(normalize_answer("  The Red  Circle. "), "red circle");
        assert_eq!(normalize_answer("yes!"), "yes");
        assert_eq!(normalize_answer("1,000"), "1000");
        assert_eq!(normalize_answer("2.5"), "2.5");
        assert_eq!(normalize_answer("left-hand"), "left hand");
        assert_eq!(normalize_answer("an apple"), "apple");
    }

    #[test]
    fn soft_scores_average_over_leave_one_out_subsets() {
        let answers: Vec<String> = ["2"; 3]
            .iter()
            .chain(["3"; 1].iter())
            .chain(["4"; 6].iter())
            .map(|s| s.to_string())
            .collect();
        let scores: BTreeMap<String, f32> = soft_scores(&answers).into_iter().collect();
        assert!((scores["2"] - 0.9).abs() < 1e-6, "{scores:?}");
        assert!((scores["3"] - 0.3).abs() < 1e-6);
        assert!((scores["4"] - 1.0).abs() < 1e-6);
        let two: Vec<String> = vec![
            "a".into(),
            "a".into(),
            "b".into(),
            "c".into(),
            "d".into(),
            "e".into(),
            "f".into(),
            "g".into(),
            "h".into(),
            "i".into(),
        ];
        let scores: BTreeMap<String, f32> = soft_scores(&two).into_iter().collect();
        assert!((scores["a"] - 0.6).abs() < 1e-6);
    }
}
