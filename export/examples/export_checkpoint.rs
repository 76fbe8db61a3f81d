//! Exports a checkpoint's three encoder graphs until the `vlbeit-export` CLI is wired:
//! `cargo run -p vlbeit-export --example export_checkpoint -- CHECKPOINT_DIR OUT_DIR`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [checkpoint, out] = args.as_slice() else {
        return Err("usage: export_checkpoint CHECKPOINT_DIR OUT_DIR".into());
    };
    let report = vlbeit_export::export_graphs(checkpoint, out)?;
    for graph in &report.graphs {
        println!("{} ({} bytes)", graph.path.display(), graph.bytes);
    }
    Ok(())
}
