use super::*;

fn generator(seed: u64) -> SceneGenerator {
    SceneGenerator::new(SceneConfig {
        image_size: 64,
        seed,
    })
    .unwrap()
}

#[test]
fn same_seed_gives_same_bytes_and_other_seeds_differ() {
    let (a, b, c) = (generator(3), generator(3), generator(4));
    for index in [0, 17] {
        let (x, y, z) = (
            a.generate(Split::Train, index),
            b.generate(Split::Train, index),
            c.generate(Split::Train, index),
        );
        assert_eq!(x.png, y.png);
        assert_eq!(x.mask_png, y.mask_png);
        assert_eq!(x.annotation, y.annotation);
        assert_ne!(x.png, z.png);
    }
    assert_ne!(
        a.generate(Split::Train, 0).png,
        a.generate(Split::Val, 0).png
    );
    assert_eq!(a.corpus_sentence(9), b.corpus_sentence(9));
    assert_eq!(
        a.nlvr2_item(Split::Test, 5, 50),
        b.nlvr2_item(Split::Test, 5, 50)
    );
}

#[test]
fn png_decodes_to_the_rendered_pixels_and_mask() {
    let scene = generator(1).generate(Split::Train, 2);
    let image = image::load_from_memory(&scene.png).unwrap().to_rgb8();
    assert_eq!(image.as_raw(), &scene.pixels);
    let mask = image::load_from_memory(&scene.mask_png).unwrap();
    assert_eq!(mask.color(), image::ColorType::L8);
    assert_eq!(mask.to_luma8().as_raw(), &scene.mask);
}

#[test]
fn supports_224_pixel_scenes() {
    let g = SceneGenerator::new(SceneConfig {
        image_size: 224,
        seed: 0,
    })
    .unwrap();
    let scene = g.generate(Split::Train, 0);
    assert_eq!(scene.pixels.len(), 224 * 224 * 3);
    assert!(
        SceneGenerator::new(SceneConfig {
            image_size: 8,
            seed: 0
        })
        .is_err()
    );
}

#[test]
fn compositional_split_holds_only_held_out_combos_and_others_none() {
    let g = generator(11);
    for index in 0..150 {
        for split in [Split::Train, Split::Val, Split::Test] {
            for o in g.objects(split, index) {
                assert!(!is_held_out(o.colour, o.shape), "{split:?} {index}: {o:?}");
            }
        }
        let objects = g.objects(Split::Compositional, index);
        assert!(!objects.is_empty());
        assert!(objects.iter().all(|o| is_held_out(o.colour, o.shape)));
    }
    for index in 0..300 {
        let sentence = g.corpus_sentence(index);
        for (c, s) in HELD_OUT_COMBOS {
            let words = format!("{} {}", c.name(), s.name());
            assert!(
                !sentence.contains(&words),
                "corpus mentions {words}: {sentence}"
            );
        }
    }
}

#[test]
fn label_is_the_shape_of_the_clearly_largest_object() {
    let g = generator(5);
    for index in 0..200 {
        let scene = g.generate(Split::Train, index);
        let mut scales: Vec<f32> = scene.objects.iter().map(|o| o.scale).collect();
        scales.sort_by(|a, b| b.total_cmp(a));
        let top = scene.objects.iter().find(|o| o.scale == scales[0]).unwrap();
        assert_eq!(scene.label, top.shape.index());
        assert_eq!(scene.label_name, CLASS_NAMES[scene.label]);
        if scales.len() > 1 {
            assert!(scales[0] >= scales[1] * 1.11, "{scales:?}");
        }
    }
}

#[test]
fn objects_are_inside_and_do_not_overlap_and_mask_agrees_at_centres() {
    let g = generator(6);
    let mut counts = [0usize; 5];
    for index in 0..150 {
        let scene = g.generate(Split::Train, index);
        counts[scene.objects.len()] += 1;
        let n = scene.image_size as usize;
        for (i, o) in scene.objects.iter().enumerate() {
            assert!(
                o.bbox[0] >= 0.0
                    && o.bbox[1] >= 0.0
                    && o.bbox[2] <= n as f32
                    && o.bbox[3] <= n as f32
            );
            let at = o.y as usize * n + o.x as usize;
            assert_eq!(scene.mask[at], o.shape.mask_class(), "{index}: {o:?}");
            assert_eq!(shape_of_mask_class(scene.mask[at]), Some(o.shape));
            for p in &scene.objects[i + 1..] {
                let d = ((o.x - p.x).powi(2) + (o.y - p.y).powi(2)).sqrt();
                assert!(d >= o.extent + p.extent);
            }
        }
        // the pixel at an object's centre has the object's colour (flat fill)
        let o = &scene.objects[0];
        let at = (o.y as usize * n + o.x as usize) * 3;
        assert_eq!(&scene.pixels[at..at + 3], &o.colour.rgb());
        assert!(scene.mask.iter().filter(|&&m| m == 0).count() > n * n / 3);
    }
    assert!(
        counts[1..].iter().all(|&c| c > 0),
        "object counts {counts:?}"
    );
}

/// Finds the objects a phrase like "red objects", "circles", "red circles", "large objects"
/// or "the large red circle" talks about, by reading its words.
fn matching<'a>(objects: &'a [SceneObject], phrase: &str) -> Vec<&'a SceneObject> {
    let words: Vec<&str> = phrase.split(' ').filter(|w| *w != "the").collect();
    objects
        .iter()
        .filter(|o| {
            words.iter().all(|&w| match w {
                "object" | "objects" => true,
                "small" | "large" => o.size.name() == w,
                _ if COLOUR_NAMES.contains(&w) => o.colour.name() == w,
                _ => o.shape.name() == w || o.shape.plural() == w,
            })
        })
        .collect()
}

#[test]
fn every_answer_agrees_with_the_objects() {
    let g = generator(8);
    let vocabulary = answer_vocabulary();
    let mut kinds = std::collections::HashMap::new();
    for index in 0..300 {
        let split = if index % 4 == 0 {
            Split::Compositional
        } else {
            Split::Train
        };
        let scene = g.generate(split, index);
        let objects = &scene.objects;
        for q in &scene.questions {
            *kinds.entry(q.kind).or_insert(0) += 1;
            assert_eq!(q.answers.len(), ANNOTATORS);
            assert_eq!(q.scores[&q.answer], 1.0, "{q:?}");
            assert!(
                q.answers.iter().all(|a| vocabulary.contains(&a.as_str())),
                "{q:?}"
            );
            let text = q.question.trim_end_matches('?');
            let answer = q.answer.as_str();
            match q.kind {
                QuestionType::Count => {
                    let target = text.strip_prefix("how many ").unwrap();
                    let target = target
                        .trim_end_matches(" are there")
                        .trim_end_matches(" are in the image");
                    assert_eq!(matching(objects, target).len().to_string(), answer, "{q:?}");
                }
                QuestionType::Colour | QuestionType::Shape => {
                    let reference = text.rsplit_once(" is ").map(|(_, r)| r).unwrap_or(text);
                    let reference = reference
                        .trim_start_matches("the colour of ")
                        .trim_start_matches("the shape of ");
                    let found = matching(objects, reference);
                    assert_eq!(found.len(), 1, "{q:?}");
                    let truth = if q.kind == QuestionType::Colour {
                        found[0].colour.name()
                    } else {
                        found[0].shape.name()
                    };
                    assert_eq!(truth, answer);
                }
                QuestionType::Existence => {
                    let thing = text
                        .strip_prefix("is there ")
                        .unwrap()
                        .split_once(' ')
                        .unwrap()
                        .1;
                    let present = !matching(objects, thing).is_empty();
                    assert_eq!(answer, if present { "yes" } else { "no" }, "{q:?}");
                }
                QuestionType::Relation => {
                    let body = text.strip_prefix("is ").unwrap();
                    let either = body
                        .split_once(" to the left or to the right of ")
                        .map(|(a, b)| (a, b, Relation::LeftOf))
                        .or_else(|| {
                            body.split_once(" above or below ")
                                .map(|(a, b)| (a, b, Relation::Above))
                        });
                    let (a, b, relation) = either
                        .or_else(|| {
                            Relation::ALL.iter().find_map(|r| {
                                let (a, b) = body.split_once(&format!(" {} ", r.phrase()))?;
                                Some((a, b, *r))
                            })
                        })
                        .unwrap();
                    let (oa, ob) = (matching(objects, a), matching(objects, b));
                    assert_eq!((oa.len(), ob.len()), (1, 1), "{q:?}");
                    let holds = relation_holds(oa[0], ob[0], relation, scene.image_size).unwrap();
                    let expected = match answer {
                        "yes" | "no" => holds == (answer == "yes"),
                        "left" | "above" => holds,
                        _ => !holds,
                    };
                    assert!(expected, "{q:?} {objects:?}");
                }
            }
        }
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
}

#[test]
fn captions_name_only_objects_in_the_scene() {
    let g = generator(9);
    for index in 0..100 {
        let scene = g.generate(Split::Train, index);
        assert!(scene.captions.len() >= 2);
        let distinct: std::collections::HashSet<_> = scene.captions.iter().collect();
        assert!(distinct.len() >= 2, "{:?}", scene.captions);
        for caption in &scene.captions {
            for c in Colour::ALL {
                for s in Shape::ALL {
                    let words = format!("{} {}", c.name(), s.name());
                    if caption.contains(&words) {
                        assert!(
                            scene.objects.iter().any(|o| o.colour == c && o.shape == s),
                            "{caption}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn nlvr2_labels_are_balanced_and_refer_to_split_scenes() {
    let g = generator(10);
    let items: Vec<Nlvr2Item> = (0..200)
        .map(|i| g.nlvr2_item(Split::Train, i, 100))
        .collect();
    let trues = items.iter().filter(|i| i.label).count();
    assert_eq!(trues, 100);
    assert!(items.chunks(2).all(|pair| pair[0].label != pair[1].label));
    let first_labels: Vec<bool> = items.iter().step_by(2).take(20).map(|i| i.label).collect();
    assert!(first_labels.contains(&true) && first_labels.contains(&false));
    for item in &items {
        assert!(
            item.left_index < 100 && item.right_index < 100 && item.left_index != item.right_index
        );
        assert_eq!(item.left, scene_key(Split::Train, item.left_index));
        // a statement of the "contains a COLOUR SHAPE" form is checked against the objects
        if let Some(rest) = item.statement.strip_prefix("the left image contains ")
            && !rest.starts_with("exactly")
            && !rest.starts_with("more")
            && !rest.starts_with("fewer")
        {
            let thing = rest.split_once(' ').unwrap().1;
            let present = !matching(&g.objects(Split::Train, item.left_index), thing).is_empty();
            assert_eq!(present, item.label, "{item:?}");
        }
    }
}

#[test]
fn scene_sample_survives_a_shard_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let g = generator(12);
    let scenes: Vec<SceneSample> = (0..5).map(|i| g.generate(Split::Val, i)).collect();
    let path = dir.path().join("s.tar");
    let mut writer = crate::shards::ShardWriter::create(&path).unwrap();
    for s in &scenes {
        writer.write(&s.to_sample()).unwrap();
    }
    writer.finish().unwrap();
    let back: Vec<_> = crate::shards::ShardReader::open(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (scene, sample) in scenes.iter().zip(&back) {
        assert_eq!(sample, &scene.to_sample());
        let annotation: SceneAnnotation = serde_json::from_slice(&sample.files["json"]).unwrap();
        assert_eq!(annotation, scene.annotation);
    }
}
