//! `vlbeit-export`: checkpoint → image/text/fusion ONNX graphs in a verified bundle.

fn main() {
    eprintln!(
        "vlbeit-export: the exporter is not written yet; see docs/design.md §5 for the bundle it will write"
    );
    std::process::exit(2);
}
