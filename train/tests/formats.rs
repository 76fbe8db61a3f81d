//! The synthetic scenes written in each public format (vlbeit-core) and read back by the
//! trainer's readers give the same task data as the scenes reader; malformed files fail with
//! errors that name the file and the entry.

use std::path::Path;

use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::scenes::{
    DatasetSpec, SceneConfig, SceneGenerator, SplitCounts, TaskFormat, write_dataset,
    write_task_format,
};
use vlbeit_train::finetune::formats::vqav2::{normalize_answer, soft_scores};
use vlbeit_train::finetune::{DataFormat, Task, TaskData, load_task_data};

const COUNTS: SplitCounts = SplitCounts {
    train: 6,
    val: 5,
    test: 0,
    compositional: 3,
};

fn setup(root: &Path) -> PreprocessConfig {
    write_dataset(
        root.join("scenes"),
        &DatasetSpec {
            image_size: 32,
            seed: 9,
            scenes: COUNTS,
            nlvr2: COUNTS,
            corpus_sentences: 10,
            shard_size: 4,
        },
    )
    .unwrap();
    let generator = SceneGenerator::new(SceneConfig {
        image_size: 32,
        seed: 9,
    })
    .unwrap();
    for format in TaskFormat::ALL {
        write_task_format(&root.join(format.name()), format, &generator, &COUNTS).unwrap();
    }
    PreprocessConfig::for_image_size(32)
}

fn load(
    root: &Path,
    task: Task,
    format: DataFormat,
    split: &str,
    pre: &PreprocessConfig,
) -> TaskData {
    let dir = match format {
        DataFormat::Scenes => root.join("scenes"),
        other => root.join(other.name()),
    };
    load_task_data(task, format, &dir, split, pre).unwrap()
}

fn error(root: &Path, task: Task, format: DataFormat, split: &str) -> String {
    let pre = PreprocessConfig::for_image_size(32);
    load_task_data(task, format, &root.join(format.name()), split, &pre)
        .unwrap_err()
        .to_string()
}

#[test]
fn every_format_reads_back_what_the_scenes_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pre = setup(root);
    for split in ["val", "compositional"] {
        // retrieval
        let (TaskData::Retrieval(a), TaskData::Retrieval(b)) = (
            load(root, Task::Retrieval, DataFormat::Scenes, split, &pre),
            load(root, Task::Retrieval, DataFormat::Karpathy, split, &pre),
        ) else {
            panic!()
        };
        assert_eq!(a.texts, b.texts);
        assert_eq!(a.text_image, b.text_image);
        assert!(a.images.pixels.equal(&b.images.pixels));

        // VQA: same questions and images; answers normalized and scored officially
        let (TaskData::Vqa(a), TaskData::Vqa(b)) = (
            load(root, Task::Vqa, DataFormat::Scenes, split, &pre),
            load(root, Task::Vqa, DataFormat::Vqav2, split, &pre),
        ) else {
            panic!()
        };
        assert_eq!(a.questions, b.questions);
        assert_eq!(a.question_image, b.question_image);
        assert!(a.images.pixels.equal(&b.images.pixels));
        let scenes = SceneGenerator::new(SceneConfig {
            image_size: 32,
            seed: 9,
        })
        .unwrap();
        let split_enum = split.parse().unwrap();
        let mut q = 0;
        for i in 0..COUNTS.get(split_enum) {
            for question in &scenes.generate(split_enum, i).questions {
                let normalized: Vec<String> = question
                    .answers
                    .iter()
                    .map(|a| normalize_answer(a))
                    .collect();
                assert_eq!(b.targets[q], soft_scores(&normalized));
                q += 1;
            }
        }
        assert_eq!(q, b.questions.len());

        // NLVR2
        let (TaskData::Nlvr2(a), TaskData::Nlvr2(b)) = (
            load(root, Task::Nlvr2, DataFormat::Scenes, split, &pre),
            load(root, Task::Nlvr2, DataFormat::Nlvr2, split, &pre),
        ) else {
            panic!()
        };
        assert_eq!(a.statements, b.statements);
        assert_eq!(a.labels, b.labels);
        for k in 0..a.statements.len() {
            for (x, y) in [(a.left[k], b.left[k]), (a.right[k], b.right[k])] {
                assert!(
                    a.images
                        .pixels
                        .get(x as i64)
                        .equal(&b.images.pixels.get(y as i64))
                );
            }
        }

        // classification: the same (image, class name) set
        let (TaskData::Classify(a), TaskData::Classify(b)) = (
            load(root, Task::Classify, DataFormat::Scenes, split, &pre),
            load(root, Task::Classify, DataFormat::ImageFolder, split, &pre),
        ) else {
            panic!()
        };
        let mut sa: Vec<String> = a.labels.iter().map(|&l| a.classes[l].clone()).collect();
        let mut sb: Vec<String> = b.labels.iter().map(|&l| b.classes[l].clone()).collect();
        sa.sort();
        sb.sort();
        assert_eq!(sa, sb);
        assert_eq!(a.labels.len(), COUNTS.get(split_enum) as usize);

        // segmentation: identical masks and class names after ADE20K's zero-label shift
        let (TaskData::Segment(a), TaskData::Segment(b)) = (
            load(root, Task::Segment, DataFormat::Scenes, split, &pre),
            load(root, Task::Segment, DataFormat::Ade20k, split, &pre),
        ) else {
            panic!()
        };
        assert_eq!(a.classes, b.classes);
        assert!(a.masks.equal(&b.masks));
        assert!(a.images.pixels.equal(&b.images.pixels));
    }
    // train includes Karpathy's restval convention and reads every training image
    let TaskData::Retrieval(train) =
        load(root, Task::Retrieval, DataFormat::Karpathy, "train", &pre)
    else {
        panic!()
    };
    assert_eq!(train.images.len(), COUNTS.train as usize);
    // a format that holds another task is refused
    let msg = error(root, Task::Vqa, DataFormat::Karpathy, "val");
    assert!(msg.contains("karpathy format holds no vqa data"), "{msg}");
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn malformed_files_name_the_file_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    setup(root);
    let vqa = root.join("vqav2");
    let annotations = vqa.join("v2_mscoco_val_annotations.json");
    let questions = vqa.join("v2_OpenEnded_mscoco_val_questions.json");

    // empty answer list
    let mut qid = String::new();
    edit_json(&annotations, |v| {
        let a = &mut v["annotations"][1];
        qid = a["question_id"].to_string();
        a["answers"] = serde_json::json!([]);
    });
    let msg = error(root, Task::Vqa, DataFormat::Vqav2, "val");
    assert!(
        msg.contains("v2_mscoco_val_annotations.json")
            && msg.contains(&format!("question_id {qid}"))
            && msg.contains("empty answer list"),
        "{msg}"
    );

    // a question without its text (missing key)
    edit_json(&questions, |v| {
        v["questions"][2]
            .as_object_mut()
            .unwrap()
            .remove("question");
    });
    let msg = error(root, Task::Vqa, DataFormat::Vqav2, "val");
    assert!(
        msg.contains("v2_OpenEnded_mscoco_val_questions.json")
            && msg.contains("questions[2]")
            && msg.contains("missing field `question`"),
        "{msg}"
    );

    // an unknown image id (the image file is missing)
    edit_json(&questions, |v| {
        v["questions"][2]["question"] = serde_json::json!("is there a star?");
        v["questions"][0]["image_id"] = serde_json::json!(777);
    });
    let msg = error(root, Task::Vqa, DataFormat::Vqav2, "val");
    assert!(
        msg.contains("image_id 777") && msg.contains("COCO_val_000000000777"),
        "{msg}"
    );

    // Karpathy: a referenced image is missing; an entry lacks its sentences
    std::fs::remove_file(root.join("karpathy/images/val-0000001.png")).unwrap();
    let msg = error(root, Task::Retrieval, DataFormat::Karpathy, "val");
    assert!(
        msg.contains("dataset_scenes.json") && msg.contains("val-0000001.png"),
        "{msg}"
    );
    edit_json(&root.join("karpathy/dataset_scenes.json"), |v| {
        v["images"][0].as_object_mut().unwrap().remove("sentences");
    });
    let msg = error(root, Task::Retrieval, DataFormat::Karpathy, "train");
    assert!(
        msg.contains("images[0]") && msg.contains("missing field `sentences`"),
        "{msg}"
    );

    // NLVR2: a label that is neither True nor False
    let nlvr2 = root.join("nlvr2/val.json");
    let text = std::fs::read_to_string(&nlvr2).unwrap();
    let broken = text.replacen("\"label\":\"True\"", "\"label\":\"maybe\"", 1);
    assert_ne!(broken, text);
    std::fs::write(&nlvr2, broken).unwrap();
    let msg = error(root, Task::Nlvr2, DataFormat::Nlvr2, "val");
    assert!(
        msg.contains("val.json") && msg.contains("neither True nor False"),
        "{msg}"
    );

    // class folder without images
    std::fs::create_dir_all(root.join("imagefolder/val/hexagon")).unwrap();
    let msg = error(root, Task::Classify, DataFormat::ImageFolder, "val");
    assert!(
        msg.contains("hexagon") && msg.contains("holds no image"),
        "{msg}"
    );

    // ADE20K: an image without its annotation
    std::fs::remove_file(root.join("ade20k/annotations/val/val-0000002.png")).unwrap();
    let msg = error(root, Task::Segment, DataFormat::Ade20k, "val");
    assert!(msg.contains("annotations/val/val-0000002.png"), "{msg}");
}
