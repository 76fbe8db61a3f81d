use super::*;
use std::path::Path;

fn samples() -> Vec<Sample> {
    (0..4)
        .map(|i| {
            let mut s = Sample::new(format!("k{i:03}"));
            s.files
                .insert("json".into(), format!("{{\"i\":{i}}}").into_bytes());
            s.files.insert("mask.png".into(), vec![i as u8; 700 + i]);
            s.files.insert("png".into(), vec![7u8; 1000 * i]);
            s
        })
        .collect()
}

fn write(dir: &Path, name: &str) -> PathBuf {
    let mut w = ShardWriter::create(dir.join(name)).unwrap();
    for s in samples() {
        w.write(&s).unwrap();
    }
    w.finish().unwrap()
}

fn read(path: &Path) -> Result<Vec<Sample>, ShardError> {
    ShardReader::open(path)?.collect()
}

#[test]
fn written_samples_read_back_identically_with_deterministic_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (write(dir.path(), "a.tar"), write(dir.path(), "b.tar"));
    assert_eq!(read(&a).unwrap(), samples());
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap());
    // the tar crate agrees on names, order and reproducible metadata
    let mut archive = tar::Archive::new(bytes.as_slice());
    let entries: Vec<(String, u64, u64, u32)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.mtime().unwrap(),
                h.uid().unwrap(),
                h.mode().unwrap(),
            )
        })
        .collect();
    assert_eq!(entries[0], ("k000.json".to_owned(), 0, 0, 0o644));
    assert_eq!(entries[1].0, "k000.mask.png");
    assert_eq!(entries.len(), 12);
    // no temp files left behind
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn truncated_shards_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "t.tar");
    let bytes = std::fs::read(&path).unwrap();
    // every cut point: inside a header, inside data, at an entry boundary, in the trailer
    for cut in [
        100,
        512,
        700,
        1024,
        1536,
        bytes.len() - 1024,
        bytes.len() - 600,
    ] {
        let cut_path = dir.path().join(format!("cut-{cut}.tar"));
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let err = read(&cut_path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("cut-{cut}.tar")), "{message}");
        assert!(
            matches!(err, ShardError::Truncated { .. }),
            "{cut}: {message}"
        );
    }
    let err = read(&dir.path().join("missing.tar")).unwrap_err();
    assert!(err.to_string().contains("missing.tar"));
}

#[test]
fn corrupt_headers_and_bad_names_are_errors_naming_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.tar");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1024 + 3] ^= 0x55; // second entry's name, checksum now wrong
    std::fs::write(&path, &bytes).unwrap();
    let mut reader = ShardReader::open(&path).unwrap();
    let err = reader.next().unwrap().unwrap_err();
    assert!(matches!(err, ShardError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("c.tar"));
    assert!(reader.next().is_none());

    let mut w = ShardWriter::create(dir.path().join("n.tar")).unwrap();
    assert!(w.write(&Sample::new("a.b")).is_err());
    drop(w);
    assert!(!dir.path().join("n.tar").exists());
    let mut raw = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(1);
    raw.append_data(&mut header, "noextension", &b"x"[..])
        .unwrap();
    let raw = raw.into_inner().unwrap();
    let err = ShardReader::new(raw.as_slice(), "raw.tar")
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string().contains("raw.tar") && err.to_string().contains("noextension"),
        "{err}"
    );
}

#[test]
fn keys_follow_the_webdataset_convention() {
    assert_eq!(split_name("a/b/k01.seg.png"), Some(("a/b/k01", "seg.png")));
    assert_eq!(split_name("k.json"), Some(("k", "json")));
    assert_eq!(split_name("dir.v2/k.json"), Some(("dir.v2/k", "json")));
    assert_eq!(split_name(".hidden"), None);
    assert_eq!(split_name("k."), None);
    assert_eq!(split_name("k"), None);
}

#[test]
fn shard_sets_roll_over_at_the_shard_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = ShardSetWriter::new(dir.path(), "x", 3);
    for s in samples().iter().chain(&samples()[..3]) {
        set.write(s).unwrap();
    }
    let paths = set.finish().unwrap();
    let names: Vec<_> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, ["x-00000.tar", "x-00001.tar", "x-00002.tar"]);
    assert_eq!(read(&paths[2]).unwrap().len(), 1);
}

#[test]
fn long_keys_and_nested_directories_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.tar");
    let mut sample = Sample::new(format!("deep/{}/k", "d".repeat(150)));
    sample.files.insert("txt".into(), b"x".to_vec());
    let mut w = ShardWriter::create(&path).unwrap();
    w.write(&sample).unwrap();
    w.finish().unwrap();
    assert_eq!(read(&path).unwrap(), vec![sample]);
}
