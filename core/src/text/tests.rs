use std::sync::OnceLock;

use super::*;

const SIZES: [&str; 5] = ["small", "large", "tiny", "big", "medium"];
const COLOURS: [&str; 8] = [
    "red", "blue", "green", "yellow", "purple", "orange", "gray", "white",
];
const SHAPES: [&str; 6] = ["circle", "square", "triangle", "star", "hexagon", "cross"];
const RELATIONS: [&str; 6] = [
    "to the left of",
    "to the right of",
    "above",
    "below",
    "next to",
    "inside",
];

/// A few hundred captions like "a small red circle to the left of a large blue square", some
/// capitalized or with extra spaces, and a few with accented words.
fn corpus() -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..400usize {
        let pick = |options: &[&'static str], salt: usize| {
            options[(i * 7 + salt * 13 + i / 3) % options.len()]
        };
        let mut line = format!(
            "a {} {} {} {} a {} {} {}",
            pick(&SIZES, 0),
            pick(&COLOURS, 1),
            pick(&SHAPES, 2),
            pick(&RELATIONS, 3),
            pick(&SIZES, 4),
            pick(&COLOURS, 5),
            pick(&SHAPES, 6),
        );
        if i % 5 == 0 {
            line = line.to_uppercase();
        }
        if i % 7 == 0 {
            line = line.replace(' ', "  ");
        }
        lines.push(line);
    }
    for i in 0..20 {
        lines.push(format!(
            "the café sign says ünïcode {}",
            COLOURS[i % COLOURS.len()]
        ));
    }
    lines
}

fn options() -> TrainOptions {
    TrainOptions::default().with_vocab_size(250)
}

fn tokenizer() -> &'static TextTokenizer {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| TextTokenizer::train(corpus(), &options()).unwrap())
}

fn json_value() -> serde_json::Value {
    serde_json::from_str(&tokenizer().to_json().unwrap()).unwrap()
}

#[test]
fn special_tokens_have_ids_0_to_4() {
    let t = tokenizer();
    for (id, token) in (0i64..).zip(SPECIAL_TOKENS) {
        assert_eq!(t.token_to_id(token), Some(id), "{token}");
        assert_eq!(t.id_to_token(id).as_deref(), Some(token));
    }
    assert_eq!(t.special_ids(), SpecialIds::FIXED);
    // The corpus has ~40 distinct words: its vocabulary saturates below the requested 250.
    assert!(
        t.vocab_size() > 60 && t.vocab_size() <= 250,
        "{}",
        t.vocab_size()
    );
    assert_eq!(t.regular_ids(), 5..t.vocab_size() as i64);
    assert!((0..5).all(|id| t.special_ids().is_special(id)));
    assert!(!t.special_ids().is_special(5));
    let json = json_value();
    assert_eq!(json["model"]["type"], "Unigram");
    assert_eq!(json["model"]["unk_id"], 1);
}

#[test]
fn encode_then_decode_gives_the_normalized_text() {
    let t = tokenizer();
    let text = "  A Small RED circle\tto the LEFT of   a large blue square ";
    let expected = "a small red circle to the left of a large blue square";
    assert_eq!(t.normalize(text).unwrap(), expected);
    let ids = t.encode(text, 64).unwrap();
    assert_eq!(t.decode(&ids).unwrap(), expected);
    // Common words of the corpus are single pieces.
    assert!(t.token_to_id("▁circle").is_some());
    assert!(!ids[1..ids.len() - 1].contains(&SpecialIds::FIXED.unk));
}

#[test]
fn unicode_and_full_width_text_is_normalized() {
    let t = tokenizer();
    let composed = t.encode("Ünïcode", 32).unwrap();
    assert_eq!(t.decode(&composed).unwrap(), "ünïcode");
    // Decomposed "u + combining diaeresis" composes under NFKC.
    assert_eq!(t.encode("U\u{308}nI\u{308}code", 32).unwrap(), composed);
    let full_width = t.encode("ＲＥＤ\u{3000}ｃｉｒｃｌｅ", 32).unwrap();
    assert_eq!(full_width, t.encode("red circle", 32).unwrap());
    let settings = t.settings(32, Padding::Longest);
    assert!(settings.lowercase);
    assert_eq!(settings.unicode_normalization, UnicodeNormalization::Nfkc);
}

#[test]
fn special_token_strings_in_text_are_plain_text() {
    let t = tokenizer();
    let ids = t.encode("[MASK] red", 32).unwrap();
    assert_eq!(
        ids.iter()
            .filter(|&&id| id == SpecialIds::FIXED.mask)
            .count(),
        0
    );
}

#[test]
fn truncation_keeps_cls_first_and_sep_last_at_max_len() {
    let t = tokenizer();
    let long = corpus()[1..6].join(" ");
    let full = t.encode(&long, 1000).unwrap();
    assert!(full.len() > 12);
    let cut = t.encode(&long, 12).unwrap();
    assert_eq!(cut.len(), 12);
    assert_eq!(cut[0], SpecialIds::FIXED.cls);
    assert_eq!(cut[11], SpecialIds::FIXED.sep);
    assert_eq!(cut[..11], full[..11]);
    let short = t.encode("a red star", 12).unwrap();
    assert!(short.len() < 12);
    assert_eq!(
        (short[0], *short.last().unwrap()),
        (SpecialIds::FIXED.cls, SpecialIds::FIXED.sep)
    );
    assert!(matches!(
        t.encode("a red star", 2),
        Err(TextError::MaxLenTooSmall { max_len: 2 })
    ));
}

#[test]
fn longest_padding_pads_to_the_longest_row() {
    let t = tokenizer();
    let texts = [
        "a red star",
        "a large blue square below a tiny green circle",
    ];
    let rows: Vec<Vec<i64>> = texts.iter().map(|s| t.encode(s, 32).unwrap()).collect();
    let batch = t.encode_batch(&texts, 32, Padding::Longest).unwrap();
    assert_eq!((batch.batch, batch.seq_len), (2, rows[1].len()));
    assert_eq!(batch.input_ids.len(), 2 * batch.seq_len);
    assert_eq!(batch.row(1).unwrap(), rows[1].as_slice());
    let short = rows[0].len();
    assert_eq!(&batch.row(0).unwrap()[..short], rows[0].as_slice());
    assert!(
        batch.row(0).unwrap()[short..]
            .iter()
            .all(|&id| id == SpecialIds::FIXED.pad)
    );
    let mask0 = &batch.attention_mask[..batch.seq_len];
    assert!(mask0[..short].iter().all(|&m| m == 1) && mask0[short..].iter().all(|&m| m == 0));
    assert!(
        batch.attention_mask[batch.seq_len..]
            .iter()
            .all(|&m| m == 1)
    );
}

#[test]
fn max_len_padding_pads_every_row_to_max_len() {
    let t = tokenizer();
    let texts = vec!["a red star".to_string(), "a blue circle".to_string()];
    let batch = t.encode_batch(&texts, 20, Padding::MaxLen).unwrap();
    assert_eq!((batch.batch, batch.seq_len), (2, 20));
    assert_eq!(batch.input_ids.len(), 40);
    for (row, text) in texts.iter().enumerate() {
        let len = t.encode(text, 20).unwrap().len();
        let mask = &batch.attention_mask[row * 20..(row + 1) * 20];
        assert_eq!(mask.iter().sum::<i64>(), len as i64);
        assert_eq!(batch.row(row).unwrap()[len - 1], SpecialIds::FIXED.sep);
        assert!(batch.row(row).unwrap()[len..].iter().all(|&id| id == 0));
    }
}

#[test]
fn empty_text_is_an_error_naming_its_position() {
    let t = tokenizer();
    let err = t
        .encode_batch(&["a red star", "a star", " \t "], 16, Padding::Longest)
        .unwrap_err();
    assert!(matches!(err, TextError::EmptyText { index: 2 }), "{err}");
    assert!(err.to_string().contains("text 2"));
    assert!(matches!(
        t.encode("", 16),
        Err(TextError::EmptyText { index: 0 })
    ));
    let none: [&str; 0] = [];
    assert!(matches!(
        t.encode_batch(&none, 16, Padding::Longest),
        Err(TextError::EmptyBatch)
    ));
}

#[test]
fn decode_rejects_ids_outside_the_vocabulary() {
    let t = tokenizer();
    let vocab_size = t.vocab_size();
    for id in [-1, vocab_size as i64] {
        let err = t.decode(&[2, id, 3]).unwrap_err();
        assert!(matches!(err, TextError::InvalidId { id: found, .. } if found == id));
    }
}

#[test]
fn a_file_that_is_not_json_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "not json {").unwrap();
    let err = TextTokenizer::load(&path).unwrap_err();
    assert!(matches!(err, TextError::NotJson { line: 1, .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));

    std::fs::write(&path, r#"{"hello": 1}"#).unwrap();
    let err = TextTokenizer::load(&path).unwrap_err();
    assert!(matches!(err, TextError::NotATokenizer { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));

    let missing = dir.path().join("absent.json");
    assert!(matches!(
        TextTokenizer::load(&missing),
        Err(TextError::Io { path, .. }) if path == missing
    ));
}

/// Renames or renumbers a token everywhere it appears in tokenizer.json.
fn edit_token(value: &mut serde_json::Value, edit: impl Fn(&str, i64) -> (String, i64)) {
    for entry in value["added_tokens"].as_array_mut().unwrap() {
        let (content, id) = edit(
            entry["content"].as_str().unwrap(),
            entry["id"].as_i64().unwrap(),
        );
        entry["content"] = content.into();
        entry["id"] = id.into();
    }
    let vocab = value["model"]["vocab"].as_array_mut().unwrap();
    let old: Vec<serde_json::Value> = vocab.clone();
    for (i, entry) in old.iter().enumerate() {
        let (content, id) = edit(entry[0].as_str().unwrap(), i as i64);
        vocab[id as usize] = serde_json::json!([content, entry[1]]);
    }
}

#[test]
fn a_tokenizer_without_the_special_tokens_is_rejected() {
    let mut renamed = json_value();
    edit_token(&mut renamed, |token, id| {
        let token = if token == "[MASK]" { "[MASK2]" } else { token };
        (token.to_owned(), id)
    });
    let err = TextTokenizer::from_bytes(renamed.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            TextError::MissingSpecialToken {
                token: "[MASK]",
                expected_id: 4,
                ..
            }
        ),
        "{err}"
    );

    let mut swapped = json_value();
    edit_token(&mut swapped, |token, id| match id {
        2 => (token.to_owned(), 3),
        3 => (token.to_owned(), 2),
        _ => (token.to_owned(), id),
    });
    let err = TextTokenizer::from_bytes(swapped.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            TextError::SpecialTokenId {
                token: "[T_CLS]",
                expected_id: 2,
                found_id: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("<bytes>"));

    let mut other_unk = json_value();
    other_unk["model"]["unk_id"] = 0.into();
    let err = TextTokenizer::from_bytes(other_unk.to_string().as_bytes()).unwrap_err();
    assert!(
        matches!(err, TextError::UnknownToken { ref found, .. } if found == "[PAD]"),
        "{err}"
    );
}

#[test]
fn save_then_load_gives_identical_encodings() {
    let t = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    t.save(&path).unwrap();
    t.save(&path).unwrap(); // overwriting is fine, and leaves no temporary file
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let loaded = TextTokenizer::load(&path).unwrap();
    assert_eq!(loaded.to_json().unwrap(), t.to_json().unwrap());
    let from_bytes = TextTokenizer::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    let texts = [
        "A Tiny Purple Hexagon inside a big gray cross",
        "ünïcode café",
        "zebra 123",
    ];
    for other in [&loaded, &from_bytes] {
        assert_eq!(
            other.encode_batch(&texts, 16, Padding::MaxLen).unwrap(),
            t.encode_batch(&texts, 16, Padding::MaxLen).unwrap()
        );
    }
}

#[test]
fn training_twice_gives_byte_identical_tokenizer_json() {
    let first = tokenizer().to_json().unwrap();
    let again = TextTokenizer::train(corpus(), &options()).unwrap();
    assert_eq!(again.to_json().unwrap(), first);

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    let lines = corpus();
    std::fs::write(&a, lines[..200].join("\n")).unwrap();
    std::fs::write(&b, lines[200..].join("\n") + "\n\n").unwrap();
    let from_files = TextTokenizer::train_from_files(&[&a, &b], &options()).unwrap();
    assert_eq!(from_files.to_json().unwrap(), first);
}

#[test]
fn training_refuses_an_empty_corpus_and_a_too_small_vocabulary() {
    let empty: [&str; 2] = ["", "  "];
    assert!(matches!(
        TextTokenizer::train(empty, &options()),
        Err(TextError::EmptyCorpus)
    ));
    let err =
        TextTokenizer::train(corpus(), &TrainOptions::default().with_vocab_size(20)).unwrap_err();
    assert!(
        matches!(err, TextError::VocabTooSmall { vocab_size: 20, .. }),
        "{err}"
    );
}

#[test]
fn check_vocab_size_names_both_sizes() {
    let t = tokenizer();
    t.check_vocab_size(t.vocab_size()).unwrap();
    let err = t.check_vocab_size(64_000).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("64000") && message.contains(&t.vocab_size().to_string()));
}

#[test]
fn settings_round_trip_and_are_checked_against_the_tokenizer() {
    let t = tokenizer();
    let settings = t.settings(40, Padding::MaxLen);
    let json = serde_json::to_string(&settings).unwrap();
    assert!(json.contains(r#""padding":"max_len""#), "{json}");
    let back: TokenizerSettings = serde_json::from_str(&json).unwrap();
    assert_eq!(back, settings);
    t.check_settings(&back).unwrap();
    let mut wrong = settings.clone();
    wrong.lowercase = false;
    assert!(matches!(
        t.check_settings(&wrong),
        Err(TextError::SettingsMismatch {
            field: "lowercase",
            ..
        })
    ));
    wrong = settings;
    wrong.special_tokens[4].id = 7;
    assert!(matches!(
        t.check_settings(&wrong),
        Err(TextError::SettingsMismatch {
            field: "special_tokens",
            ..
        })
    ));
}
