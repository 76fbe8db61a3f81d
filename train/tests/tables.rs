//! The tables run in smoke mode (a few steps, two seeds, the micro model): every pretraining
//! variant and fine-tuning run happens, the five tables come out with mean ± std cells, and a
//! second call reuses the finished runs.

mod common;

use tch::Device;
use vlbeit_train::tables::{TablesConfig, run_tables};

#[test]
fn smoke_run_writes_all_five_tables() {
    let f = common::fixture();
    let config = TablesConfig {
        model: f.model.clone(),
        data: f.root.join("scenes"),
        tokenizer: f.root.join("tokenizer.json"),
        visual_tokenizer: f.root.join("visual_tokenizer"),
        out: f.root.join("tables"),
        seeds: vec![0, 1],
        pretrain_steps: 2,
        pretrain_batch: 2,
        finetune_steps: 2,
        finetune_batch: 3,
        eval_limit: Some(3),
        rerank_k: 2,
        command: "vlbeit-train tables --smoke".into(),
        device: Device::Cpu,
        progress: false,
    };
    let results = run_tables(&config).unwrap();
    for variant in ["full", "mvlm", "mvlm_mim", "standard", "beit", "scratch"] {
        assert!(results.contains_key(variant), "{variant}");
    }
    assert_eq!(
        results["full"]["vqa"]["compositional"]["vqa_score"].len(),
        2,
        "one value per seed"
    );
    let md = std::fs::read_to_string(config.out.join("results.md")).unwrap();
    for table in 1..=5 {
        assert!(md.contains(&format!("## Table {table}")), "table {table}");
    }
    assert!(md.contains(" ± "), "{md}");
    assert!(!md.contains("| – |"), "an empty cell:\n{md}");
    assert!(config.out.join("results/pretrain_loss.png").is_file());
    assert!(config.out.join("results/ablation.png").is_file());

    // finished runs are reused: same numbers, nothing retrained
    let stamp = std::fs::metadata(
        config
            .out
            .join("finetune-full-vqa-s0/checkpoint/config.json"),
    )
    .unwrap()
    .modified()
    .unwrap();
    let again = run_tables(&config).unwrap();
    assert_eq!(again, results);
    let after = std::fs::metadata(
        config
            .out
            .join("finetune-full-vqa-s0/checkpoint/config.json"),
    )
    .unwrap()
    .modified()
    .unwrap();
    assert_eq!(stamp, after);
}
